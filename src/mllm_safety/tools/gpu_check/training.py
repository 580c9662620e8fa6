"""The training rows of the GPU check: NF4 QLoRA through stage 03's own trainer on written samples, timed per
optimizer step, at the scales the check runs at."""

from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import TrainerCallback

from ...core.files import write_json
from .models import Target, load_filled, parameter_count

WARMUP_STEPS = 1
OVER_BUDGET = "not run: the check's time budget (--budget-s) was spent"
TEXT_WORDS = 96  # words of question + answer in a typical sample (~128 tokens with the prompt format)


@dataclass(frozen=True)
class Scale:
    """The sizes a scale runs at: the checkpoint's (`7b`, on a GPU), or the replica's (`tiny`, the CPU rehearsal:
    micro-batches of 1 and 2, a max_length of 1024 and four items keep it to minutes)."""

    timed_steps: int
    micro_batch: int | None = None  # None: the preset's
    max_length: int | None = None  # None: the preset's
    items: int = 16  # generation: items answered each way
    new_tokens: int = 32


SCALES = {
    "7b": Scale(timed_steps=3),
    "tiny": Scale(timed_steps=1, micro_batch=1, max_length=1024, items=4, new_tokens=16),
}
# Dense bf16 tensor-core peaks from NVIDIA's datasheets (SXM parts), TFLOP/s: the denominator of the MFU estimate.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepClock(TrainerCallback):
    """The wall time of each optimizer step (the GPU synchronised at both ends)."""

    def __init__(self):
        self.times: list[float] = []
        self.start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        sync()
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        sync()
        self.times.append(time.perf_counter() - self.start)


def write_mixture(path: Path, data_root: Path, image_side: int, count: int, long_text: int = 0) -> None:
    """`count` training records in LLaVA's json: one image and ~TEXT_WORDS words each, or, with long_text, no
    image and that many words (to fill max_length)."""
    images = data_root / "check"
    images.mkdir(parents=True, exist_ok=True)
    words = "one two three four five six seven eight nine ten".split()
    records = []
    for i in range(count):
        record: dict[str, Any] = {"id": f"check-{i}"}
        if long_text:
            question, answer = "Say the numbers.", " ".join(words[j % 10] for j in range(long_text))
        else:
            Image.new("RGB", (image_side, image_side), (37 * i % 256, 90, 160)).save(images / f"{i}.png")
            record["image"] = f"check/{i}.png"
            question = "<image>\n" + " ".join(words[(i + j) % 10] for j in range(TEXT_WORDS // 4))
            answer = " ".join(words[(i * 3 + j) % 10] for j in range(TEXT_WORDS - TEXT_WORDS // 4))
        record["conversations"] = [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
        records.append(record)
    write_json(path, records)


def check_preset(target: Target, folder: Path, work: Path, scale: Scale, micro: int, mix: str) -> Any:
    """The preset for the check: its training settings on the weightless model, one micro-batch a step, a
    constant learning rate, no checkpoints (and the scale's max_length)."""
    from ...core.preset import Preset

    lengths = {"max_length": scale.max_length} if scale.max_length else {}
    return Preset.load(
        target.preset,
        **lengths,
        model_path=str(folder),
        runs_root=str(work / "runs"),
        data_root=str(work / "data"),
        train_mixes=[mix],
        micro_batch_size=micro,
        global_batch_size=micro,
        max_steps=WARMUP_STEPS + scale.timed_steps,
        save_steps=10**6,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        max_skipped_share=1.0,
    )


def mfu(tokens_per_s: float, params: int) -> float | None:
    """6 x parameters x tokens/s (the forward and backward matrix products, attention and recomputation left
    out) over the GPU's dense bf16 peak; None where the peak is not known."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    return 6 * params * tokens_per_s / (peak * 1e12) if peak else None


def train_steps(preset: Any, model: Any, processor: Any, mix: str, attention: str) -> dict[str, Any]:
    """Train `max_steps` micro-batches through stage 03's trainer; time the steps after the warm-up."""
    from ...core.modeling import find_parts
    from ...qlora_finetune.arguments import training_arguments
    from ...qlora_finetune.data import load_mixture
    from ...qlora_finetune.record import peak_memory_mb
    from ...qlora_finetune.trainer import make_trainer

    cfg = preset.train
    base = unwrap(model)
    base.set_attn_implementation(attention)
    dataset, _ = load_mixture(cfg, mix, processor)
    out = Path(cfg.runs_root) / "train" / f"{mix}-{attention}"
    args = training_arguments(cfg, out)
    clock = StepClock()
    trainer = make_trainer(
        cfg, model, processor.tokenizer.pad_token_id, find_parts(base).connectors, dataset, args, [clock], True
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    timed = clock.times[WARMUP_STEPS:]
    tokens = cfg.micro_batch_size * sum(dataset.lengths) / len(dataset.lengths)
    seconds = sum(timed) / len(timed)
    return {
        "micro_batch": cfg.micro_batch_size,
        "tokens_per_sample": round(tokens / cfg.micro_batch_size, 1),
        "attention": attention,
        "s_per_step": round(seconds, 4),
        "tokens_per_s": round(tokens / seconds, 1),
        "peak_memory_mib": round(peak_memory_mb(), 1),
    }


def attention_kinds() -> list[str]:
    kinds = ["sdpa", "eager"]
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        kinds.append("flash_attention_2")
    return kinds


def check_training(
    target: Target, folder: Path, work: Path, scale: Scale, seed: int, notes: list[str], deadline: float = math.inf
) -> tuple[list[dict[str, Any]], Any, Any]:
    """Every training measurement of one model; returns the rows, the trained model and its processor."""
    from ...core.modeling import cap_image_pixels, load_processor
    from ...core.preset import Preset
    from ...qlora_finetune.data import make_trainable

    micro = scale.micro_batch or Preset.load(target.preset).train.micro_batch_size
    runs = [("typical", micro, "sdpa"), ("typical", 2 * micro, "sdpa"), ("worst", micro, "sdpa")]
    runs += [("typical", micro, kind) for kind in attention_kinds() if kind != "sdpa"]
    if torch.cuda.is_available() and "flash_attention_2" not in attention_kinds():
        notes.append("flash-attention: not importable here, not measured")
    first = check_preset(target, folder, work, scale, micro, "typical").train
    processor = cap_image_pixels(load_processor(folder), first.image_max_pixels)
    model = make_trainable(first, load_filled(folder, first.quantization, seed))
    params = parameter_count(folder)
    rows = []
    for run in runs:  # past the deadline a row says so instead of running
        late = time.monotonic() > deadline
        rows.append(
            not_run(target, run) if late else train_run(target, folder, work, scale, run, model, processor, params)
        )
    unwrap(model).set_attn_implementation("sdpa")
    return rows, model, processor


def train_run(
    target: Target,
    folder: Path,
    work: Path,
    scale: Scale,
    run: tuple[str, int, str],
    model: Any,
    processor: Any,
    params: int,
) -> dict[str, Any]:
    """One row: write the run's samples, train on them, and say what it cost (or that it ran out of memory)."""
    shape, size, attention = run
    mix = f"{shape}-{size}"
    preset = check_preset(target, folder, work, scale, size, mix)
    path = preset.train.upstream("mix_rejection_data") / f"{mix}.json"
    long_text = 2 * preset.train.max_length if shape == "worst" else 0
    count = size * (WARMUP_STEPS + scale.timed_steps)
    write_mixture(path, Path(preset.train.data_root), target.image_side, count, long_text)
    row: dict[str, Any] = {"model": target.preset, "samples": shape, "quantization": preset.train.quantization}
    try:
        measured = train_steps(preset, model, processor, mix, attention)
    except torch.cuda.OutOfMemoryError as e:
        torch.cuda.empty_cache()
        return row | {"micro_batch": size, "attention": attention, "error": f"out of memory: {str(e).splitlines()[0]}"}
    share = mfu(measured["tokens_per_s"], params)
    return row | measured | {"mfu": round(share, 4) if share is not None else None}


def not_run(target: Target, run: tuple[str, int, str]) -> dict[str, Any]:
    shape, size, attention = run
    return {"model": target.preset, "samples": shape, "micro_batch": size, "attention": attention, "error": OVER_BUDGET}


def unwrap(model: Any) -> Any:
    """The transformers model inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
