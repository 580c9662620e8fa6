"""QLoRA fine-tuning on the CPU with a tiny LLaVA: loading, LoRA placement, end to end NF4, resume, reuse."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from mllm_safety import qlora_finetune as train
from mllm_safety.core.config import TrainConfig
from mllm_safety.core.files import DataFormatError
from mllm_safety.core.labels import IGNORE_INDEX, Encoder, image_token_id
from mllm_safety.core.modeling import add_lora, find_parts, load_model, lora_targets
from mllm_safety.core.names import official_mix_name
from mllm_safety.core.preset import Preset
from mllm_safety.core.records import load_llava_json
from mllm_safety.core.vocabulary import record_images
from mllm_safety.qlora_finetune.data import balanced_micro_batches

MIX = official_mix_name(Preset.load("smoke").mix)  # the mixture that the mini_runs fixture writes


def small_cfg(runs, data, model, **over) -> TrainConfig:
    base = dict(
        preset="smoke",
        runs_root=str(runs),
        data_root=str(data),
        model_path=str(model),
        train_mixes=[MIX],
        lora_r=8,
        lora_alpha=16,
        global_batch_size=8,
        micro_batch_size=4,
        max_steps=4,
        save_steps=2,
        max_length=512,
    )
    return TrainConfig(**{**base, **over})


def test_defaults_are_the_papers_recipe():
    c = TrainConfig()
    assert (c.lora_r, c.lora_alpha, c.lora_dropout) == (128, 256, 0.05)
    assert (c.learning_rate, c.projector_lr, c.lr_scheduler, c.warmup_ratio, c.weight_decay) == (
        2e-4,
        2e-5,
        "cosine",
        0.03,
        0.0,
    )
    assert (c.num_epochs, c.global_batch_size, c.max_length) == (3.0, 128, 2048)
    assert c.train_projector and c.gradient_checkpointing and c.mask_eos_on_rejection
    assert (c.prompt_format, c.quantization, c.model_path) == ("vicuna_v1", "nf4", "llava-hf/llava-1.5-7b-hf")


def test_nf4_quantizes_the_language_model_only_and_lora_sits_there(tiny_model):
    import bitsandbytes as bnb

    model, _ = load_model(tiny_model, "nf4")
    parts = find_parts(model)
    assert (parts.decoder, parts.vision, parts.connectors) == (
        "model.language_model",
        "model.vision_tower",
        ("model.multi_modal_projector",),
    )
    quantized = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized and all(n.startswith("model.language_model.") for n in quantized)
    targets = lora_targets(model)
    assert targets == sorted(quantized)
    assert {t.rsplit(".", 1)[1] for t in targets} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    peft_model = add_lora(model, 4, 8, 0.0, train_projector=False, gradient_checkpointing=False)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)


def test_projector_is_trained_fully_when_asked(tiny_model):
    model, _ = load_model(tiny_model, "none")
    peft_model = add_lora(model, 4, 8, 0.0, train_projector=True, gradient_checkpointing=True)
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("multi_modal_projector.modules_to_save" in n for n in names)
    assert not any("vision_tower" in n or "lm_head" in n for n in names)


class Generate(TrainerCallback):
    """Greedy tokens of the trained model in memory, before anything is saved."""

    def __init__(self, inputs):
        self.inputs, self.tokens = inputs, None

    def on_train_end(self, args, state, control, model=None, **kwargs):
        model.eval()
        with torch.no_grad():
            self.tokens = model.generate(**self.inputs, max_new_tokens=8, do_sample=False).tolist()


def prompt_inputs(processor, world_data):
    from PIL import Image

    from mllm_safety.core.prompts import FORMATS

    image = Image.open(next((world_data / "llava_med/images").glob("*.png"))).convert("RGB")
    text = FORMATS["vicuna_v1"].prompt("<image>\nWhat modality is used for this chest image?")
    return processor(text=[text], images=[image], return_tensors="pt")


def test_nf4_end_to_end_train_save_reload_generate(tiny_model, world_data, mini_runs, tmp_path):
    from peft import PeftModel

    cfg = small_cfg(mini_runs, world_data, tiny_model, runs_root=str(tmp_path / "runs"))
    (tmp_path / "runs/smoke").mkdir(parents=True)
    (tmp_path / "runs/smoke/02_mix_rejection_data").symlink_to(mini_runs / "smoke/02_mix_rejection_data")
    _, processor = load_model(tiny_model, "none")
    hook = Generate(prompt_inputs(processor, world_data))
    metrics = train.train_mixture(cfg, MIX, callbacks=[hook])
    assert metrics["steps"] == 4 and metrics["samples"] == 28 and metrics["trained_tokens"] > 0
    assert metrics["quantization"] == "nf4" and metrics["device"] == "cpu"
    assert metrics["mean_loss"] > 0 and metrics["last_logged_loss"] > 0
    adapter = tmp_path / "runs/smoke/03_qlora_finetune" / MIX / "adapter"
    weights = load_file(adapter / "adapter_model.safetensors")
    assert any("multi_modal_projector" in k for k in weights) and any("lora_A" in k for k in weights)
    base, _ = load_model(tiny_model, "nf4")
    reloaded = PeftModel.from_pretrained(base, str(adapter)).eval()
    with torch.no_grad():
        again = reloaded.generate(**hook.inputs, max_new_tokens=8, do_sample=False).tolist()
    assert hook.tokens is not None and again == hook.tokens
    assert (tmp_path / "runs/smoke/03_qlora_finetune" / MIX / "log_history.jsonl").is_file()


class Kill(TrainerCallback):
    """Raise after a given optimizer step, as if the job were killed."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("killed by the test")


def _link_mixes(runs_root, mini_runs):
    (runs_root / "smoke").mkdir(parents=True)
    (runs_root / "smoke/02_mix_rejection_data").symlink_to(mini_runs / "smoke/02_mix_rejection_data")


def test_killed_run_resumes_to_the_same_adapter(tiny_model, world_data, mini_runs, tmp_path):
    results, losses = {}, {}
    for name, kill in (("straight", None), ("killed", 3)):
        runs = tmp_path / name
        _link_mixes(runs, mini_runs)
        cfg = small_cfg(runs, world_data, tiny_model, max_steps=6, quantization="none", lora_dropout=0.05)
        if kill:
            with pytest.raises(KeyboardInterrupt):
                train.train_mixture(cfg, MIX, callbacks=[Kill(kill)])
            checkpoints = runs / "smoke/03_qlora_finetune" / MIX / "checkpoints"
            assert (checkpoints / "checkpoint-2").is_dir()
            assert not (runs / "smoke/03_qlora_finetune" / MIX / "adapter").exists()
            # a kill during the next save leaves a checkpoint without its trainer_state.json: resume skips it
            shutil.copytree(checkpoints / "checkpoint-2", checkpoints / "checkpoint-3")
            (checkpoints / "checkpoint-3/trainer_state.json").unlink()
        metrics = train.train_mixture(cfg, MIX)
        assert metrics["steps"] == 6 and metrics["resumed_from_step"] == (2 if kill else 0)
        losses[name] = metrics["mean_loss"]  # the mean over all 6 steps, also after the resume
        results[name] = load_file(runs / "smoke/03_qlora_finetune" / MIX / "adapter/adapter_model.safetensors")
    assert losses["killed"] == pytest.approx(losses["straight"], rel=1e-4)
    assert results["straight"].keys() == results["killed"].keys()
    for key, value in results["straight"].items():
        torch.testing.assert_close(results["killed"][key], value, atol=1e-5, rtol=1e-4)


def test_finished_run_is_reused_and_never_overwritten(tiny_model, world_data, mini_runs, tmp_path):
    runs = tmp_path / "runs"
    _link_mixes(runs, mini_runs)
    cfg = small_cfg(runs, world_data, tiny_model, max_steps=2, quantization="none")
    first = train.train_mixture(cfg, MIX)
    adapter = runs / "smoke/03_qlora_finetune" / MIX / "adapter/adapter_model.safetensors"
    stamp = adapter.stat().st_mtime_ns
    assert train.train_mixture(cfg, MIX) == first and adapter.stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="different config"):
        train.train_mixture(dataclasses.replace(cfg, learning_rate=1e-3), MIX)


def fate(sample, cut, image_id):
    """What cutting a full-length sample at `cut` tokens leaves, the rule written out from its positions: an image
    token past the cut skips it, no trained token before the cut skips it, else it is truncated (or kept whole)."""
    ids = sample["input_ids"].tolist()
    trained = [i for i, label in enumerate(sample["labels"].tolist()) if label != IGNORE_INDEX]
    if len(ids) > cut and image_id in ids[cut:]:
        return "skipped_image_truncated"
    if not trained or trained[0] >= cut:
        return "skipped_fully_masked"
    return "truncated" if len(ids) > cut else "kept"


def test_skipped_and_truncated_samples_are_counted(tiny_model, world_data, mini_runs):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model)
    records = load_llava_json(mini_runs / "smoke/02_mix_rejection_data" / f"{MIX}.json")
    cut = 50  # the smoke mix's answers start between tokens 41 and 63
    whole = Encoder(processor, "vicuna_v1", world_data, 10**6, True)
    expected = Counter(fate(whole.encode(r), cut, image_token_id(processor)) for r in records)
    data = train.MixtureDataset(records, Encoder(processor, "vicuna_v1", world_data, cut, True))
    assert expected["truncated"] > 0 and expected["skipped_fully_masked"] > 0  # both fates occur in this mix
    fates = ("truncated", "skipped_fully_masked", "skipped_image_truncated")
    assert {k: data.counts[k] for k in fates} == {k: expected[k] for k in fates}
    assert len(data) == expected["kept"] + expected["truncated"]
    with pytest.raises(DataFormatError, match=r"of 28 records cannot be trained on \(fully_masked: \d+"):
        data.check_skips(Path("mix.json"), limit=0.01)  # a run stops rather than train on what is left
    data.check_skips(Path("mix.json"), limit=1.0)


def test_modality_sampler_batches_one_modality_and_is_seeded():
    lengths, image = [5, 9, 3, 7, 2, 8, 6, 4], [True, False] * 4
    sampler = train.ModalityLengthSampler(lengths, image, batch=2, seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(8))
    assert all(len({image[i] for i in order[k : k + 2]}) == 1 for k in range(0, 8, 2))
    assert order == list(train.ModalityLengthSampler(lengths, image, batch=2, seed=1))
    assert order != list(train.ModalityLengthSampler(lengths, image, batch=2, seed=2))


def test_the_official_grouping_gives_each_optimizer_step_one_modality():
    """LLaVA's rule, worked out by hand: steps of micro x accumulation records hold one modality, each step's micro
    batches balanced by total length (longest first, each to the lightest batch not yet full), and both
    modalities' last steps (even full ones) together at the end in index order."""
    image = [True] * 9 + [False] * 6  # 9 image records (2 full steps of 4 + 1), 6 text-only (1 step of 4 + 2)
    lengths = [10, 9, 2, 1, 8, 8, 3, 3, 5, 7, 6, 5, 4, 3, 2]
    sampler = train.ModalityLengthSampler(lengths, image, batch=2, seed=0, grouping="step", step_size=4)
    order = list(sampler)
    assert sorted(order) == list(range(15)) and order == list(sampler)
    # full steps: two of the image records (4 + 4 of 9) and one of the text-only ones (4 of 6), in a shuffled order
    steps = [order[k : k + 4] for k in range(0, 12, 4)]
    assert all(len({image[i] for i in step}) == 1 for step in steps)
    assert sorted(image[step[0]] for step in steps) == [False, True, True]
    last = order[12:]  # the image records' last step (1) and the text-only ones' (2), in index order
    assert last == sorted(last) and [image[i] for i in last] == [True, False, False]
    # one step dealt by hand: lengths 10, 9, 2, 1 into two micro batches of two -> [10, 1] and [9, 2]
    assert balanced_micro_batches([2, 3, 0, 1], lengths, 2) == [0, 3, 1, 2]


def test_merge_gives_the_same_outputs_as_the_adapter(tiny_model, world_data, mini_runs, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mllm_safety.core.modeling import merge_adapter as merge

    runs = tmp_path / "runs"
    _link_mixes(runs, mini_runs)
    train.train_mixture(small_cfg(runs, world_data, tiny_model, max_steps=2, quantization="none"), MIX)
    adapter = runs / "smoke/03_qlora_finetune" / MIX / "adapter"
    merged_dir = merge(tiny_model, adapter, tmp_path / "merged", dtype=torch.float32)
    inputs = prompt_inputs(AutoProcessor.from_pretrained(merged_dir), world_data)
    base = AutoModelForImageTextToText.from_pretrained(tiny_model, dtype=torch.float32)
    with torch.no_grad():
        untouched = base.eval()(**inputs).logits
        expected = PeftModel.from_pretrained(base, str(adapter)).eval()(**inputs).logits
        got = AutoModelForImageTextToText.from_pretrained(merged_dir).eval()(**inputs).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert (got - untouched).abs().max() > 1e-3  # the adapter changed something
    with pytest.raises(FileExistsError):
        merge(tiny_model, adapter, merged_dir)


def test_llava_next_any_resolution_trains_with_nf4(tmp_path):
    from PIL import Image

    from mllm_safety.core.labels import Collator, Encoder
    from mllm_safety.core.prompts import VICUNA_SYSTEM
    from mllm_safety.core.tiny import build_tiny_llava

    path = build_tiny_llava(
        tmp_path / "next", [VICUNA_SYSTEM, "USER: ASSISTANT: what is this? a cup."], architecture="llava_next"
    )
    Image.new("RGB", (60, 30), "red").save(tmp_path / "wide.png")
    Image.new("RGB", (30, 30), "blue").save(tmp_path / "square.png")
    model, processor = load_model(path, "nf4")
    assert type(model).__name__ == "LlavaNextForConditionalGeneration"
    conv = [{"from": "human", "value": "<image>\nwhat is this?"}, {"from": "gpt", "value": "a cup."}]
    encoder = Encoder(processor, "vicuna_v1", tmp_path, 512, True)
    samples = [
        encoder.encode({"id": i, "image": f, "conversations": conv}) for i, f in enumerate(["wide.png", "square.png"])
    ]
    patches = [s["pixel_values"].shape[1] for s in samples]
    assert patches[0] != patches[1]  # any-resolution: the two aspect ratios give different patch counts
    batch = Collator(processor.tokenizer.pad_token_id)(samples)
    assert batch["pixel_values"].shape[1] == max(patches) and batch["image_sizes"].shape == (2, 2)
    peft_model = add_lora(model, 4, 8, 0.0, train_projector=True, gradient_checkpointing=True)
    loss = peft_model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in peft_model.named_parameters() if "lora_B" in n)


def test_cpu_nf4_refuses_layers_narrower_than_a_block(tmp_path):
    from mllm_safety.core.tiny import build_tiny_llava

    path = build_tiny_llava(tmp_path / "narrow", ["a b c"], hidden_size=32)
    if torch.cuda.is_available():
        pytest.skip("the check is for bitsandbytes' CPU kernels")
    with pytest.raises(ValueError, match="multiple of 64.*lm_hidden: 64"):
        load_model(path, "nf4")
    assert load_model(path, "none")[0] is not None


def test_two_processes_reach_the_global_batch_and_its_steps(tiny_model, world_data, mini_runs, tmp_path):
    """torchrun with 2 CPU processes (gloo): accumulation is divided by the processes, so 28 records at a global
    batch of 16 (micro 4 x accumulation 2 x 2 processes) take 2 optimizer steps (the launcher-blind count: 1)."""
    import subprocess
    import sys

    import yaml

    runs = tmp_path / "runs"
    _link_mixes(runs, mini_runs)
    preset = {
        "data_root": str(world_data),
        "runs_root": str(runs),
        "model_path": str(tiny_model),
        "train_mixes": [MIX],
        "quantization": "none",
        "prompt_format": "vicuna_v1",
        "global_batch_size": 16,
        "micro_batch_size": 4,
        "num_epochs": 1.0,
        "gradient_checkpointing": False,
        "lora_r": 8,
        "lora_alpha": 16,
    }
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(preset), encoding="utf-8")
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    done = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "-m", "mllm_safety.qlora_finetune", "--preset", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((runs / "smoke/03_qlora_finetune" / MIX / "metrics.json").read_text())
    assert (metrics["processes"], metrics["effective_batch"], metrics["samples"], metrics["steps"]) == (2, 16, 28, 2)
    stage = json.loads((runs / "smoke/03_qlora_finetune/metrics.json").read_text())
    assert stage[f"{MIX}/steps"] == 2  # written once, by rank 0


def test_full_fine_tuning_trains_the_language_model_and_connector_and_stage_04_loads_it(
    tiny_model, world_data, mini_runs, tmp_path
):
    from mllm_safety import evaluate
    from mllm_safety.core.config import EvalConfig

    with pytest.raises(ValueError, match="Fix: set quantization: none"):
        small_cfg(mini_runs, world_data, tiny_model, finetune="full")
    cfg = small_cfg(
        mini_runs, world_data, tiny_model, runs_root=str(tmp_path / "runs"), finetune="full", quantization="none"
    )
    _link_mixes(tmp_path / "runs", mini_runs)
    _, processor = load_model(tiny_model, "none")
    hook = Generate(prompt_inputs(processor, world_data))
    metrics = train.train_mixture(cfg, MIX, callbacks=[hook])
    assert metrics["finetune"] == "full" and metrics["steps"] == 4
    run = tmp_path / "runs/smoke/03_qlora_finetune" / MIX
    assert (run / "model/config.json").is_file() and not (run / "adapter").exists()
    before, after = load_file(Path(tiny_model) / "model.safetensors"), load_file(run / "model/model.safetensors")
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    for part in ("layers", "embed_tokens", "lm_head", "multi_modal_projector"):
        assert any(part in k for k in changed), part
    assert not any("vision_tower" in k for k in changed)  # the vision tower stays frozen
    ev = EvalConfig(preset="smoke", runs_root=str(tmp_path / "runs"), model_path=str(tiny_model))
    assert evaluate.adapter_path(ev, MIX) == run / "model"
    model, _ = evaluate.load_for_eval(ev, MIX)
    with torch.no_grad():
        again = model.generate(**hook.inputs, max_new_tokens=8, do_sample=False).tolist()
    assert hook.tokens is not None and again == hook.tokens


# The TrainingArguments the two presets must give on one process, written out field by field (not computed by the
# code under test), so that a change of the derivation that changes an argument fails here.
OLD_ARGUMENTS = {
    "toy": {
        "output_dir": "OUT/checkpoints",
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 2,
        "num_train_epochs": 10.0,
        "max_steps": -1,
        "learning_rate": 0.002,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.03,
        "weight_decay": 0.0,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 20,
        "save_total_limit": 2,
        "seed": 0,
        "data_seed": 0,
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
        "include_num_input_tokens_seen": "non_padding",
        "gradient_checkpointing": False,  # core.modeling sets it on the model; the Trainer must not set it again
    },
    "llava-1.5-7b": {
        "output_dir": "OUT/checkpoints",
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 16,
        "num_train_epochs": 3.0,
        "max_steps": -1,
        "learning_rate": 0.0002,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.03,
        "weight_decay": 0.0,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 50,
        "save_total_limit": 2,
        "seed": 0,
        "data_seed": 0,
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
        "include_num_input_tokens_seen": "non_padding",
        "gradient_checkpointing": False,
    },
}


@pytest.mark.parametrize("preset", sorted(OLD_ARGUMENTS))
def test_training_arguments_are_those_of_the_hand_written_mapping(preset, monkeypatch):
    import importlib.util

    from transformers import TrainingArguments

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = train.training_arguments(Preset.load(preset).train, Path("OUT")).to_dict()
    assert {k: args[k] for k in OLD_ARGUMENTS[preset]} == OLD_ARGUMENTS[preset]
    cuda = torch.cuda.is_available()
    machine = {"bf16": cuda and torch.cuda.is_bf16_supported(), "use_cpu": not cuda}  # the machine's, not the preset's
    tensorboard = ["tensorboard"] if importlib.util.find_spec("tensorboard") else []
    assert {k: args[k] for k in machine} == machine and args["report_to"] == tensorboard
    # every other field keeps transformers' default (on this machine)
    default = TrainingArguments(output_dir="OUT/checkpoints", **machine).to_dict()
    others = set(args) - set(OLD_ARGUMENTS[preset]) - set(machine) - {"report_to"}
    assert {k: args[k] for k in others} == {k: default[k] for k in others}


def test_the_config_to_trainer_table_is_checked_against_the_real_dataclass():
    from transformers import TrainingArguments

    assert train.CONFIG_TO_TRAINER == {
        "learning_rate": "learning_rate",
        "lr_scheduler": "lr_scheduler_type",
        "warmup_ratio": "warmup_steps",
        "weight_decay": "weight_decay",
        "num_epochs": "num_train_epochs",
        "max_steps": "max_steps",
        "micro_batch_size": "per_device_train_batch_size",
        "save_steps": "save_steps",
        "logging_steps": "logging_steps",
        "seed": "seed",
    }
    ours = [f.name for f in dataclasses.fields(TrainConfig)]
    theirs = {f.name for f in dataclasses.fields(TrainingArguments)}
    assert set(train.FIXED) <= theirs and not set(train.FIXED) & set(train.CONFIG_TO_TRAINER.values())
    # a transformers release that renamed a field: the module would not import
    with pytest.raises(TypeError, match="TrainingArguments has no field 'lr_scheduler_type'"):
        train.config_to_trainer(ours, theirs - {"lr_scheduler_type"})
    with pytest.raises(TypeError, match="'output_dir' is set by both TrainConfig and FIXED"):
        train.config_to_trainer([*ours, "output_dir"], theirs)


def test_an_unknown_scheduler_fails_before_the_model_loads(tmp_path, monkeypatch):
    from transformers import SchedulerType

    def forbidden(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(train, "load_model", forbidden)
    runs = tmp_path / "runs"
    cfg = small_cfg(runs, tmp_path, tmp_path / "model", lr_scheduler="cosine_typo")
    allowed = ", ".join(s.value for s in SchedulerType)

    def stage(c: TrainConfig) -> None:  # the stage as its CLI runs it: on the whole preset
        train.run(Preset.from_values(c.preset, c.to_dict()))

    for call in (stage, lambda c: train.train_mixture(c, MIX)):
        with pytest.raises(DataFormatError) as err:
            call(cfg)
        assert str(err.value) == f"lr_scheduler 'cosine_typo' is not one of {allowed}"
    assert not runs.exists()  # nothing written either


class Snapshot(TrainerCallback):
    """The trained weights of the language model's layers and the connector, in fp32, before and after training."""

    def __init__(self):
        self.before, self.after = {}, {}

    @staticmethod
    def _weights(model):
        keep = ("layers.", "multi_modal_projector.")
        return {
            n: p.detach().float().clone()
            for n, p in model.named_parameters()
            if p.requires_grad and n.endswith("weight") and p.dim() == 2 and any(k in n for k in keep)
        }

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = self._weights(model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.after = self._weights(model)


def test_full_fine_tuning_under_bf16_compute_moves_every_weight_by_the_learning_rate(
    tiny_model, world_data, mini_runs, tmp_path, monkeypatch
):
    """On a GPU the compute dtype is bf16 (mixed precision). Full fine-tuning at MIS's lr 2e-6 must still train:
    AdamW's first step moves each weight by lr * g / (|g| + eps), i.e. by lr for every weight whose gradient is
    not ~0. In bf16 weights (spacing ~1e-4 near 0.02) such a step rounds away; in fp32 master weights it stays.
    The CPU stands in for the GPU: compute dtype and the Trainer's bf16 autocast forced on."""
    from mllm_safety.core import modeling
    from mllm_safety.qlora_finetune import arguments

    monkeypatch.setattr(modeling, "compute_dtype", lambda: torch.bfloat16)
    monkeypatch.setitem(arguments.FIXED, "bf16", lambda *_: True)
    lr = 2e-6
    cfg = small_cfg(
        mini_runs, world_data, tiny_model, runs_root=str(tmp_path / "runs"), finetune="full", quantization="none",
        learning_rate=lr, projector_lr=lr, lr_scheduler="constant", warmup_ratio=0.0, max_steps=1,
        global_batch_size=4, micro_batch_size=4, save_steps=100, gradient_checkpointing=False,
    )  # fmt: skip
    mixes = tmp_path / "runs/smoke/02_mix_rejection_data"
    mixes.mkdir(parents=True)
    records = load_llava_json(mini_runs / "smoke/02_mix_rejection_data" / f"{MIX}.json")
    with_images = [r for r in records if record_images(r)]  # the one step holds images: the connector gets a gradient
    (mixes / f"{MIX}.json").write_text(json.dumps(with_images), encoding="utf-8")
    snap = Snapshot()
    train.train_mixture(cfg, MIX, callbacks=[snap])
    assert snap.before and snap.before.keys() == snap.after.keys()
    moved = torch.cat([(snap.after[n] - snap.before[n]).abs().flatten() for n in snap.before])
    share_changed = float((moved > 0).float().mean())
    median_step = float(moved[moved > 0].median()) if share_changed else 0.0
    assert share_changed > 0.99, f"only {share_changed:.2%} of the trained weights changed"
    assert 0.9 * lr < median_step < 1.1 * lr, f"median change {median_step:.3g}, expected ~{lr}"


def test_full_fine_tuning_memory_is_counted_and_refused_when_one_gpu_cannot_hold_it(tiny_model):
    from transformers import AutoModelForImageTextToText

    from mllm_safety.core.modeling import check_full_fits, full_finetune_bytes

    model = AutoModelForImageTextToText.from_pretrained(tiny_model)
    count = lambda prefix: sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix))  # noqa: E731
    language, head = count("model.language_model."), count("lm_head.")
    projector, vision = count("model.multi_modal_projector."), count("model.vision_tower.")
    assert language + head + projector + vision == sum(p.numel() for p in model.parameters())
    assert full_finetune_bytes(tiny_model, train_projector=True) == 16 * (language + head + projector) + 4 * vision
    assert full_finetune_bytes(tiny_model, train_projector=False) == 16 * (language + head) + 4 * (projector + vision)
    # a 7B model's 7.06e9 parameters (LLaVA-1.5-7B: 6.74e9 trained, 0.3e9 frozen) on an 80 GiB GPU
    need = 16 * 6_740_000_000 + 4 * 303_000_000
    with pytest.raises(DataFormatError, match=r"102 GiB before activations; this GPU has 80 GiB. Fix: .*ZeRO-3"):
        check_full_fits(need, 80 * 2**30, processes=1, model_path="llava-hf/llava-1.5-7b-hf")
    check_full_fits(need, 80 * 2**30, processes=4, model_path="llava-hf/llava-1.5-7b-hf")  # sharded: not refused
    check_full_fits(need, 141 * 2**30, processes=1, model_path="llava-hf/llava-1.5-7b-hf")


def test_eval_dtype_sets_the_precision_of_unquantized_evaluation_and_of_the_merge(tiny_model, world_data, mini_runs):
    from mllm_safety import evaluate
    from mllm_safety.core.config import EvalConfig

    common = dict(preset="smoke", runs_root=str(mini_runs), model_path=str(tiny_model), eval_quantization="none")
    model, _ = evaluate.load_for_eval(EvalConfig(**common, eval_dtype="bfloat16"), None)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    model, _ = evaluate.load_for_eval(EvalConfig(**common, eval_dtype="auto"), None)
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # the CPU's compute dtype
    assert evaluate.eval_dtype(EvalConfig(**{**common, "eval_quantization": "nf4"}, eval_dtype="float16")) is None
    with pytest.raises(ValueError, match="eval_dtype"):
        EvalConfig(**common, eval_dtype="fp8")


def test_image_max_pixels_sets_qwens_pixel_budget_and_is_refused_where_there_is_none(tmp_path, tiny_model):
    from PIL import Image

    from mllm_safety.core.modeling import cap_image_pixels, load_processor
    from mllm_safety.tools.replicas import build_replica

    qwen = load_processor(build_replica("qwen2.5-vl", tmp_path / "qwen", seed=0))
    image = Image.new("RGB", (1000, 1000), (120, 30, 30))
    grid = lambda p: p.image_processor(images=[image], return_tensors="pt")["image_grid_thw"].tolist()  # noqa: E731
    # the checkpoint's budget (12845056 px): 1000 px rounds to 1008 = 72 patches of 14 a side
    assert grid(qwen) == [[1, 72, 72]]
    # Qwen's fine-tuning budget 50176 px = 224 x 224: 16 x 16 patches, 64 tokens after the 2 x 2 merge
    assert grid(cap_image_pixels(qwen, 50176)) == [[1, 16, 16]]
    with pytest.raises(DataFormatError, match="image_max_pixels 50176: .* has no pixel budget"):
        cap_image_pixels(load_processor(tiny_model), 50176)
