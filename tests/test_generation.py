"""Batched generation equals one-at-a-time under greedy decoding; files resume and refuse mixed decodings."""

from __future__ import annotations

import json

import pytest

from mllm_safety.core import generation as gen
from mllm_safety.core.generation import Decoding, generate, generate_batch, read_generations
from mllm_safety.core.modeling import load_model
from mllm_safety.core.prompts import build_prompt
from mllm_safety.data import load_benchmark

DECODING = Decoding(max_new_tokens=6)


@pytest.fixture(scope="module")
def model_and_processor(tiny_model):
    model, processor = load_model(tiny_model, "none")
    return model.eval(), processor


@pytest.fixture(scope="module")
def items(world_data):
    images = load_benchmark("mm_safetybench", world_data / "mm_safetybench")[:4]
    text = load_benchmark("xstest", world_data / "xstest")[:3]
    return images + text + load_benchmark("figstep", world_data / "figstep")[:2]


def test_batched_equals_one_at_a_time_under_greedy(model_and_processor, items):
    model, processor = model_and_processor
    one = [generate_batch(model, processor, [it], "vicuna_v1", DECODING)[0] for it in items]
    batched = generate_batch(model, processor, items, "vicuna_v1", DECODING)
    assert batched == one and all(isinstance(r, str) for r in one)
    assert not any("ASSISTANT" in r for r in one)  # only the new tokens are decoded


def test_resume_skips_answered_items(model_and_processor, items, tmp_path, monkeypatch):
    model, processor = model_and_processor
    out = tmp_path / "g.jsonl"
    args = dict(model_name="tiny", adapter=None, prompt_format="vicuna_v1", decoding=DECODING, batch_size=2)
    first = generate(model, processor, items[:3], out, **args)
    seen = []
    real = gen.generate_batch
    monkeypatch.setattr(
        gen, "generate_batch", lambda m, p, chunk, *a, **k: seen.extend(chunk) or real(m, p, chunk, *a, **k)
    )
    rows = generate(model, processor, items, out, **args)
    assert sorted(it.id for it in seen) == sorted(it.id for it in items[3:])
    assert [r["id"] for r in read_generations(out)][:3] == [r["id"] for r in first]
    assert len(rows) == len(items) == len({r["id"] for r in rows})
    row = rows[0]
    assert row["model"] == "tiny" and row["prompt_format"] == "vicuna_v1" and row["decoding"]["max_new_tokens"] == 6
    assert row["image_input"] == "none" and "response" in row and "category" in row


def test_a_different_decoding_refuses_to_append(model_and_processor, items, tmp_path):
    model, processor = model_and_processor
    out = tmp_path / "g.jsonl"
    args = dict(model_name="tiny", adapter=None, prompt_format="vicuna_v1", batch_size=4)
    generate(model, processor, items[:2], out, decoding=DECODING, **args)
    with pytest.raises(FileExistsError, match=r"different \['decoding'\]"):
        generate(model, processor, items, out, decoding=Decoding(max_new_tokens=7), **args)
    with pytest.raises(FileExistsError, match=r"different \['prompt_format'\]"):
        generate(model, processor, items, out, decoding=DECODING, **{**args, "prompt_format": "llava_v1"})
    assert len(read_generations(out)) == 2


def test_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"id": "a"}) + "\n" + '{"id": "b", "resp', encoding="utf-8")
    assert [r["id"] for r in read_generations(path)] == ["a"]


def test_blank_image_and_prompt_formats(model_and_processor, items, tmp_path):
    model, processor = model_and_processor
    text_item = next(it for it in items if it.image is None)
    assert len(gen.item_images(text_item, blank_image=True)) == 1 and gen.item_images(text_item, False) == []
    rows = generate(
        model,
        processor,
        [text_item],
        tmp_path / "b.jsonl",
        model_name="tiny",
        adapter=None,
        prompt_format="vicuna_v1",
        decoding=DECODING,
        blank_image=True,
    )
    assert rows[0]["image_input"] == "blank"
    assert build_prompt(text_item.prompt, 1, processor, "vicuna_v1").endswith(
        f"USER: <image>\n{text_item.prompt} ASSISTANT:"
    )
    chat = build_prompt(text_item.prompt, 0, processor, "chat_template")
    assert chat.startswith("<|im_start|>user\n") and chat.endswith("<|im_start|>assistant\n")


def test_chat_models_stop_at_the_end_of_their_turn(model_and_processor):
    model, processor = model_and_processor
    end_of_turn = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = model.generation_config.eos_token_id
    assert gen.stop_token_ids(model, processor, "vicuna_v1") == [eos]
    assert gen.stop_token_ids(model, processor, "chat_template") == [eos, end_of_turn]


def test_prompts_beyond_the_context_are_named_in_a_warning(model_and_processor, items, monkeypatch, caplog):
    model, processor = model_and_processor
    text_config = model.config.get_text_config()
    item = items[0]  # an image item: its prompt, image tokens included, as the processor makes it
    text = build_prompt(item.prompt, 1, processor, "vicuna_v1")
    n = len(gen.processor_inputs(processor, [text], [gen.item_images(item, False, processor)])["input_ids"][0])
    monkeypatch.setattr(text_config, "max_position_embeddings", n + 6)  # exactly room for max_new_tokens=6
    generate_batch(model, processor, [item], "vicuna_v1", DECODING)
    assert "exceed the model's" not in caplog.text
    monkeypatch.setattr(text_config, "max_position_embeddings", n)  # the prompt alone fills it
    generate_batch(model, processor, [item], "vicuna_v1", DECODING)
    assert (
        f"1 item(s) exceed the model's {n}-token context with max_new_tokens=6 (1 by their prompt alone)" in caplog.text
    )
    assert f"{item.id} ({n} tokens)" in caplog.text
