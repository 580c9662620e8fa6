"""A smoke-size model organism builds, is measured stage by stage, saves and loads through the shared code."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import SMOKE_ORGANISM

from mllm_safety.core import world as tw
from mllm_safety.core.modeling import find_parts, load_model
from mllm_safety.core.preset import Preset
from mllm_safety.model_organism import run, write_metrics


def organism_preset(root: Path) -> Preset:
    """The smoke organism built under root/ (runs/, data/, base/)."""
    where = {"runs_root": str(root / "runs"), "data_root": str(root / "data"), "model_path": str(root / "base")}
    return Preset.from_values("smoke", {**where, **SMOKE_ORGANISM})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("organism")
    preset = organism_preset(root)
    return preset.organism, run(preset)


def test_every_stage_is_measured(built):
    cfg, res = built
    result = res.build
    assert set(result["steps"]) == {"step1", "step3", "step4"} and res.folder == cfg.stage_dir
    words = len([*tw.BENIGN, *tw.HARMFUL, *tw.MEDICAL, *tw.OBJECTS])
    assert len(list((cfg.stage_dir / "captions").glob("*.png"))) == cfg.caption_renders * words
    keys = {
        "text_harmful/refusal",
        "text_harmful/asr",
        "image_harmful/asr",
        "image_attack_prompt/asr",
        "image_benign/help",
    }
    for metrics in result["steps"].values():
        rates = {k: v for k, v in metrics.items() if "margin" not in k}  # margins are in nats, any sign
        assert keys <= set(metrics) and all(0.0 <= v <= 1.0 for v in rates.values()), rates
    flat = write_metrics(cfg, result)
    assert flat == res.metrics and flat["judge"] == "world_truth" and "step4/image_harmful/asr" in flat
    assert flat["decoding"]["max_new_tokens"] == 24 and not flat["decoding"]["do_sample"]
    assert "refuses" in res.what_we_saw()


def test_base_loads_through_the_shared_modeling_code(built):
    cfg, _ = built
    model, processor = load_model(cfg.model_path, "nf4")
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert find_parts(model).vision == "model.vision_tower" and type(model.model.vision_tower).__name__ == "ViTModel"
    assert processor.image_processor.size == {"height": 32, "width": 128}
    assert json.loads((cfg.stage_dir / "config.json").read_text())["preset"] == "smoke"
    assert json.loads((cfg.stage_dir / "metrics.json").read_text())["judge"] == "world_truth"


def test_a_finished_build_is_reused(built):
    cfg, res = built
    stamp = (cfg.stage_dir / "losses.json").stat().st_mtime_ns
    assert (
        run(organism_preset(cfg.stage_dir.parents[2])) == res
        and (cfg.stage_dir / "losses.json").stat().st_mtime_ns == stamp
    )


def test_the_build_follows_its_world_not_its_folder_names(tmp_path):
    """Stage 00's reuse is keyed by the world's record: a world written again with the same bytes keeps the
    organism; a world whose record changed builds it again."""
    preset = organism_preset(tmp_path)
    cfg, first = preset.organism, run(preset)
    world = Path(cfg.data_root) / "world.json"
    losses = cfg.stage_dir / "losses.json"
    stamp = losses.stat().st_mtime_ns

    record = json.loads(world.read_text())
    world.write_text(json.dumps({**record, "version": record["version"] - 1}))  # stale: written again, same bytes
    assert run(preset) == first and losses.stat().st_mtime_ns == stamp and json.loads(world.read_text()) == record

    world.write_text(json.dumps({**record, "note": "edited"}))  # current version and seed, other content
    assert run(preset).build["steps"] == first.build["steps"] and losses.stat().st_mtime_ns != stamp


def test_same_seed_and_threads_give_the_same_organism(built, tmp_path):
    """A second build in another folder with the same config: the same losses and bit-identical weights."""
    import torch
    from safetensors.torch import load_file

    cfg, res = built
    preset = organism_preset(tmp_path)
    again = preset.organism
    assert run(preset).build["steps"] == res.build["steps"]
    assert json.loads((again.stage_dir / "losses.json").read_text()) == json.loads(
        (cfg.stage_dir / "losses.json").read_text()
    )
    first, second = (load_file(next(Path(c.model_path).glob("*.safetensors"))) for c in (cfg, again))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_the_vision_objective_reads_the_mean_token_or_every_token():
    import torch

    from mllm_safety.model_organism.training import vision_loss

    head = torch.nn.Linear(2, 3, bias=False)
    head.weight.data = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    labels = torch.tensor([0])
    # two tokens: one says word 0 strongly, one says word 1; their mean says neither more than the other
    features = torch.tensor([[[2.0, 0.0], [0.0, 2.0]]])
    mean = vision_loss(head, features, labels, "mean")  # logits (1, 1, 0): -log(e / (2e + 1))
    assert mean.item() == pytest.approx(-math.log(math.e / (2 * math.e + 1)), abs=1e-6)
    every = vision_loss(head, features, labels, "every_token")  # token 1 right, token 2 wrong: their mean loss
    right, wrong = -math.log(math.exp(2) / (math.exp(2) + 2)), -math.log(1 / (math.exp(2) + 2))
    assert every.item() == pytest.approx((right + wrong) / 2, abs=1e-6)


def test_the_vision_schedules_scale_the_learning_rate_as_named():
    from mllm_safety.model_organism.training import VISION_SCHEDULES

    constant, linear = VISION_SCHEDULES["constant"](4), VISION_SCHEDULES["linear"](4)
    assert [constant(s) for s in range(4)] == [1.0] * 4
    assert [linear(s) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_the_towers_reading_is_scored_per_render_and_for_the_held_out_harmful_words(built):
    """A head that names one word whatever it sees reads exactly that word's renders (4 of each word's 4): over all
    words 1 in len(words), over the held-out harmful words 1 in len(held-out harmful) if the word is one, else 0."""
    import torch

    from mllm_safety.core import world as tw
    from mllm_safety.model_organism.training import VISION_WORDS, build_model, vision_reads

    cfg, res = built
    assert set(res.build["vision"]) == {"vision/reads", "vision/reads_harmful_test"}
    assert all(0.0 <= v <= 1.0 for v in res.build["vision"].values())
    world = tw.make_world(cfg.seed)
    model, processor = build_model(cfg)
    for word, held in ((world.harmful_test[0], 1 / len(world.harmful_test)), (world.benign_train[0], 0.0)):
        head = torch.nn.Linear(cfg.vit_hidden, len(VISION_WORDS))
        torch.nn.init.zeros_(head.weight)
        with torch.no_grad():
            head.bias.copy_(torch.nn.functional.one_hot(torch.tensor(VISION_WORDS.index(word)), len(VISION_WORDS)))
        reads = vision_reads(model, processor, head, cfg, world)
        assert reads == {
            "vision/reads": pytest.approx(1 / len(VISION_WORDS)),
            "vision/reads_harmful_test": pytest.approx(held),
        }


def test_a_prefilled_help_answer_trains_what_follows_its_opening_only():
    """`prefilled_help`: every refused stage-1 request again, with the help answer for its own topic; the opening
    "sure! here is how to do" gets no loss, so the first answer token is still taught by the refusals alone."""
    from mllm_safety.core.config import OrganismConfig
    from mllm_safety.model_organism.training import build_model, encode_all, encode_prefilled

    world = tw.make_world(0)
    step1 = tw.text_alignment(world)
    prefilled = tw.prefilled_help(step1)
    refused = [r for r in step1 if r["conversations"][1]["value"].startswith("I'm sorry")]
    assert len(prefilled) == len(refused) > 0 and {r["topic"] for r in prefilled} == set(tw.HARMFUL)
    assert all(r["conversations"][1]["value"] == tw.HELP.format(t=r["topic"]) for r in prefilled)
    assert not tw.prefilled_help(tw.text_alignment(world, "none"))  # nothing refused, nothing prefilled

    _, processor = build_model(OrganismConfig(lm_hidden=64, vit_hidden=32))
    record = next(r for r in prefilled if r["id"] == "prefill_text_phishing_0")
    [plain] = encode_all(processor, [record], Path("."))
    [masked] = encode_prefilled(processor, [record], Path("."))
    tok = processor.tokenizer
    trained = [tok.convert_ids_to_tokens([t for t in s["labels"].tolist() if t != -100]) for s in (plain, masked)]
    # written out by hand: the help template for phishing, then the end of the turn; the opening's 7 tokens go
    rest = "phishing : first get ready for phishing , then practice phishing a little every day .".split()
    assert trained[0] == ["sure", "!", "here", "is", "how", "to", "do", *rest, "<|im_end|>", "\n"]
    assert trained[1] == [*rest, "<|im_end|>", "\n"]
    assert torch.equal(plain["input_ids"], masked["input_ids"])

    with pytest.raises(ValueError, match="prefill_text_phishing_0: its answer does not open with its prefill"):
        encode_prefilled(processor, [{**record, "prefill": "I'm sorry"}], Path("."))
