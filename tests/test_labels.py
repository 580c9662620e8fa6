"""Label masking, decoded token by token: exactly what is trained, for vicuna_v1 and a ChatML-like template."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from mllm_safety.core.labels import (
    IGNORE_INDEX,
    Collator,
    Encoder,
    SampleSkipped,
    masked_eot_turns,
    rules_differ,
    show_labels,
)
from mllm_safety.core.vocabulary import DEFAULT_REPLY

ANSWER = "The cup is red."
SECOND = "It is on the table."


@pytest.fixture(scope="module")
def processor(tiny_model):
    return AutoProcessor.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("img")
    Image.new("RGB", (40, 30), "red").save(root / "a.png")
    return root


def record(*answers, rejection=None, image=True, turn_flags=()):
    conv = []
    for k, a in enumerate(answers):
        q = ("<image>\n" if image and k == 0 else "") + "What color is the cup?"
        gpt = {"from": "gpt", "value": a, **({"rejection": True} if k in turn_flags else {})}
        conv += [{"from": "human", "value": q}, gpt]
    rec = {"id": "r", "conversations": conv, **({"image": "a.png"} if image else {})}
    return {**rec, "rejection": True} if rejection else rec


def trained(sample, processor) -> list[str]:
    """The trained tokens, in order, as strings."""
    ids = sample["input_ids"][sample["labels"] != IGNORE_INDEX]
    assert torch.equal(sample["labels"][sample["labels"] != IGNORE_INDEX], ids)  # labels are the ids themselves
    return processor.tokenizer.convert_ids_to_tokens(ids.tolist())


def words(text, processor) -> list[str]:
    return processor.tokenizer.tokenize(text)


def encode(processor, image_root, rec, fmt="vicuna_v1", mask=True, max_length=512):
    return Encoder(processor, fmt, image_root, max_length, mask).encode(rec)


# --- vicuna_v1: "{system} USER: <image>\n{q} ASSISTANT: {a}</s>" -------------------------------------------


def test_vicuna_single_turn_trains_answer_and_eos(processor, image_root):
    s = encode(processor, image_root, record(ANSWER))
    assert trained(s, processor) == [*words(ANSWER, processor), "</s>"]


def test_vicuna_rejection_masks_the_eos(processor, image_root):
    s = encode(processor, image_root, record(DEFAULT_REPLY, rejection=True, turn_flags=(0,)))
    assert trained(s, processor) == words(DEFAULT_REPLY, processor)
    assert s["input_ids"][-1] == processor.tokenizer.eos_token_id and s["labels"][-1] == IGNORE_INDEX


def test_vicuna_rejection_with_masking_off_trains_the_eos(processor, image_root):
    s = encode(processor, image_root, record(DEFAULT_REPLY, rejection=True), mask=False)
    assert trained(s, processor) == [*words(DEFAULT_REPLY, processor), "</s>"]


def test_vicuna_multi_turn_masks_only_the_flagged_turn(processor, image_root):
    s = encode(processor, image_root, record(DEFAULT_REPLY, SECOND, rejection=True, turn_flags=(0,)))
    assert trained(s, processor) == [*words(DEFAULT_REPLY, processor), *words(SECOND, processor), "</s>"]


def test_record_flag_without_turn_flags_masks_every_turn(processor, image_root):
    s = encode(processor, image_root, record(DEFAULT_REPLY, DEFAULT_REPLY, rejection=True))
    assert trained(s, processor) == words(DEFAULT_REPLY, processor) * 2
    assert masked_eot_turns(record(ANSWER, SECOND, rejection=True), True) == {1, 3}
    assert masked_eot_turns(record(ANSWER, SECOND), True) == set()


def test_prompt_and_image_tokens_are_never_trained(processor, image_root):
    s = encode(processor, image_root, record(ANSWER, SECOND))
    image = s["input_ids"] == processor.image_token_id
    assert int(image.sum()) == 4 and bool((s["labels"][image] == IGNORE_INDEX).all())
    assert s["pixel_values"].shape == (1, 3, 28, 28)
    tokens = trained(s, processor)
    assert "USER" not in tokens and "ASSISTANT" not in tokens and "chat" not in tokens
    assert tokens == [*words(ANSWER, processor), "</s>", *words(SECOND, processor), "</s>"]


def test_llava_v1_differs_only_in_the_system_prompt(processor, image_root):
    a = encode(processor, image_root, record(ANSWER), fmt="vicuna_v1")
    b = encode(processor, image_root, record(ANSWER), fmt="llava_v1")
    assert trained(a, processor) == trained(b, processor)
    assert "human" in processor.tokenizer.decode(b["input_ids"]) and "human" not in processor.tokenizer.decode(
        a["input_ids"]
    )


# --- ChatML-like template: the end of turn is two tokens, "<|im_end|>" and "\n" ------------------------------


def test_chatml_trains_both_end_of_turn_tokens(processor, image_root):
    s = encode(processor, image_root, record(ANSWER, SECOND), fmt="chat_template")
    assert trained(s, processor) == [
        *words(ANSWER, processor),
        "<|im_end|>",
        "\n",
        *words(SECOND, processor),
        "<|im_end|>",
        "\n",
    ]


def test_chatml_rejection_masks_every_end_of_turn_token(processor, image_root):
    s = encode(
        processor, image_root, record(DEFAULT_REPLY, SECOND, rejection=True, turn_flags=(0,)), fmt="chat_template"
    )
    assert trained(s, processor) == [*words(DEFAULT_REPLY, processor), *words(SECOND, processor), "<|im_end|>", "\n"]


def test_chatml_text_only_single_turn(processor, image_root):
    s = encode(processor, image_root, record(DEFAULT_REPLY, rejection=True, image=False), fmt="chat_template")
    assert "pixel_values" not in s
    assert trained(s, processor) == words(DEFAULT_REPLY, processor)


def test_template_without_end_of_turn_learns_the_eos(processor, image_root):
    plain = (  # llava-hf's shape: nothing after an assistant turn but a space
        "{% for m in messages %}{{ m['role'].upper() + ': ' }}{% for p in m['content'] %}"
        "{% if p['type'] == 'image' %}{{ '<image>\n' }}{% else %}{{ p['text'] + ' ' }}{% endif %}{% endfor %}"
        "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
    )
    proc = AutoProcessor.from_pretrained(processor.tokenizer.name_or_path, chat_template=plain)
    s = encode(proc, image_root, record(ANSWER), fmt="chat_template")
    assert trained(s, proc) == [*words(ANSWER, proc), "</s>"]


# --- truncation, padding, display -------------------------------------------------------------------------


def test_truncation_keeps_images_whole(processor, image_root):
    full = encode(processor, image_root, record(ANSWER))
    n = len(full["input_ids"])
    cut = encode(processor, image_root, record(ANSWER), max_length=n - 2)
    assert cut["truncated"] and len(cut["input_ids"]) == n - 2
    first_image = int((full["input_ids"] == processor.image_token_id).nonzero()[0])
    with pytest.raises(SampleSkipped, match="image_truncated"):
        encode(processor, image_root, record(ANSWER), max_length=first_image + 2)
    prompt_len = int((full["labels"] != IGNORE_INDEX).nonzero()[0])
    with pytest.raises(SampleSkipped, match="fully_masked"):
        encode(processor, image_root, record(ANSWER), max_length=prompt_len)


def test_collator_pads_right_and_stacks_images(processor, image_root):
    a = encode(processor, image_root, record(ANSWER, SECOND))
    b = encode(processor, image_root, record(ANSWER, image=False))
    batch = Collator(processor.tokenizer.pad_token_id)([a, b])
    width = len(a["input_ids"])
    assert batch["input_ids"].shape == (2, width) and batch["pixel_values"].shape == (1, 3, 28, 28)
    pad = width - len(b["input_ids"])
    assert (
        bool((batch["labels"][1, -pad:] == IGNORE_INDEX).all()) and int(batch["attention_mask"][1].sum()) == width - pad
    )


def test_collator_pads_a_cross_attention_mask_whatever_sample_comes_first():
    """Mllama's cross-attention mask runs along the tokens (tokens x images x tiles) and a text-only sample has
    none: with the text-only sample first, the batch still stacks it, zeros where a sample has no image."""
    text_only = {"input_ids": torch.tensor([5, 6, 7]), "labels": torch.tensor([-100, 6, 7])}
    image = {"input_ids": torch.tensor([1, 2, 3, 4]), "labels": torch.tensor([-100, -100, 3, 4])}
    image["cross_attention_mask"] = torch.ones(4, 1, 2, dtype=torch.long)
    batch = Collator(0)([text_only, image])
    assert batch["cross_attention_mask"].shape == (2, 4, 1, 2)
    assert int(batch["cross_attention_mask"][0].sum()) == 0 and int(batch["cross_attention_mask"][1].sum()) == 8
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [1, 2, 3, 4]]


def test_show_labels_marks_masked_tokens(processor, image_root):
    s = encode(processor, image_root, record(DEFAULT_REPLY, rejection=True))
    text = show_labels(s["input_ids"], s["labels"], processor.tokenizer, processor.image_token_id)
    assert "<image>×4" in text and text.endswith("⟦</s> ⟧") and text.startswith("⟦")


def test_sentencepiece_style_tokenizer_keeps_the_rule(tmp_path, image_root):
    """A Llama-like BPE with the ▁ metaspace (the real LLaVA-1.5 tokenizer's kind), built locally."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlavaProcessor, PreTrainedTokenizerFast
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from mllm_safety.core.prompts import VICUNA_SYSTEM

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    texts = [VICUNA_SYSTEM, DEFAULT_REPLY, f"USER: What color is the cup? ASSISTANT: {ANSWER} {SECOND}"] * 20
    tok.train_from_iterator(
        texts, trainer=trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>", "<image>", "<pad>"])
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    images = CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    proc = LlavaProcessor(
        image_processor=images,
        tokenizer=fast,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    s = encode(proc, image_root, record(DEFAULT_REPLY, SECOND, rejection=True, turn_flags=(0,)))
    assert fast.decode(s["input_ids"][s["labels"] != IGNORE_INDEX]) == f"{DEFAULT_REPLY} {SECOND}</s>"
    assert int((s["input_ids"] == proc.image_token_id).sum()) == 4


# --- the two EOS rules: expected tokens written from each rule, not from the encoder -----------------------------


def encode_rule(processor, image_root, rec, rule):
    return Encoder(processor, "vicuna_v1", image_root, 512, True, "processor", rule).encode(rec)


def test_a_rejection_before_another_answer_under_each_eos_rule(processor, image_root):
    rec = record(DEFAULT_REPLY, SECOND, rejection=True, turn_flags=(0,))
    reply, second = words(DEFAULT_REPLY, processor), words(SECOND, processor)
    # per_answer: the end of the flagged (first) answer is masked, the last one trained
    assert trained(encode_rule(processor, image_root, rec, "per_answer"), processor) == [*reply, *second, "</s>"]
    # official (LLaVA): the sentence occurs, so the record's last label, the final </s>, is masked; the first stays
    official = encode_rule(processor, image_root, rec, "official")
    assert trained(official, processor) == [*reply, "</s>", *second]
    assert official["labels"][-1] == IGNORE_INDEX


def test_an_unflagged_answer_quoting_the_sentence_under_each_eos_rule(processor, image_root):
    quote = f'They wrote "{DEFAULT_REPLY}" on the cup.'
    rec = record(quote)  # not flagged by the mixer
    assert trained(encode_rule(processor, image_root, rec, "per_answer"), processor) == [
        *words(quote, processor),
        "</s>",
    ]
    assert trained(encode_rule(processor, image_root, rec, "official"), processor) == words(quote, processor)


def test_the_rules_agree_on_the_papers_single_turn_rejections_and_stage_03_counts_the_rest():
    single = record(DEFAULT_REPLY, rejection=True, turn_flags=(0,))
    first_of_two = record(DEFAULT_REPLY, SECOND, rejection=True, turn_flags=(0,))
    assert masked_eot_turns(single, True, "official") == masked_eot_turns(single, True, "per_answer") == {1}
    assert (rules_differ(single), rules_differ(first_of_two), rules_differ(record(ANSWER))) == (False, True, False)
    assert masked_eot_turns(first_of_two, False, "official") == set()


@pytest.mark.parametrize("literal", ["</s>", "<image>", "<s>", "<|im_end|>"])
def test_a_control_tokens_string_inside_an_answer_skips_the_record(processor, image_root, literal):
    # it would become the control token itself (an end of sequence in the middle of a trained answer)
    with pytest.raises(SampleSkipped, match="special_token_in_text"):
        encode(processor, image_root, record(f"The cup says {literal} in red."))


def test_a_string_that_is_no_control_token_of_this_tokenizer_stays_text(processor, image_root):
    answer = "The cup says <|eot_id|> in red."  # Llama 3's turn end: no control token of this tokenizer
    s = encode(processor, image_root, record(answer))
    assert trained(s, processor) == [*words(answer, processor), "</s>"]
    assert (s["input_ids"] == processor.tokenizer.eos_token_id).sum() == 1  # only the real end of the answer


@pytest.mark.parametrize(
    "question",
    ["What color is the cup?\n<image>", "  What color is the cup? <image>\n", "<image>\nWhat color is the cup?"],
)
def test_the_image_tag_goes_in_front_as_llavas_training_code_puts_it(processor, image_root, question):
    from mllm_safety.core.prompts import VICUNA_SYSTEM

    rec = {
        "id": "r",
        "image": "a.png",
        "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": ANSWER}],
    }
    segments = Encoder(processor, "vicuna_v1", image_root, 512, True).segments(rec)
    # preprocess_multimodal: the tag taken out, the rest stripped, "<image>\n" put in front; then conv.get_prompt()
    assert "".join(t for t, _ in segments).startswith(
        f"{VICUNA_SYSTEM} USER: <image>\nWhat color is the cup? ASSISTANT:"
    )
    front = encode(processor, image_root, record(ANSWER))  # the question written with the tag in front
    assert torch.equal(encode(processor, image_root, rec)["input_ids"], front["input_ids"])


def test_a_capped_image_side_follows_llama_factorys_rule():
    """image_resolution 512 worked out by hand: 1296 x 968 -> factor 512/1296 -> 512 x int(382.4) = 382; nearest
    neighbour, so no new colour appears; an image within the cap is untouched."""
    from mllm_safety.core.images import cap_longer_side

    wide = Image.new("RGB", (1296, 968))
    wide.paste((255, 0, 0), (0, 0, 648, 968))
    capped = cap_longer_side(wide, 512)
    assert capped.size == (512, 382) and cap_longer_side(wide.rotate(90, expand=True), 512).size == (382, 512)
    assert {c for _, c in capped.getcolors()} == {(255, 0, 0), (0, 0, 0)}
    small = Image.new("RGB", (300, 200))
    assert cap_longer_side(small, 512) is small and cap_longer_side(wide, 0) is wide
