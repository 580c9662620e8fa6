"""The prepared GPU check (`make gpu-check`): what a 7B model costs through this project's own training and
evaluation code, measured in one call on a borrowed GPU, and rehearsed on the CPU at tiny scale by the tests.

For LLaVA-1.5-7B and Qwen2.5-VL-7B (random weights with the checkpoints' exact configurations, their real
tokenizers and processor settings from the replicas):
- training: NF4 QLoRA through stage 03's own path (`load_base`, `make_trainable`, `training_arguments`,
  `make_trainer`, the collator and the modality sampler) at the preset's micro-batch and one size above, on
  samples of the training data's typical shape (one image and ~128 text tokens); the preset's micro-batch once
  more at its worst case (every sample `max_length` tokens); SDPA against eager attention (and flash-attention
  where importable) on the training step: tokens/s, estimated MFU, peak memory;
- generation: the same items answered one at a time and batched (`core.generation.generate_batch`): items/s and
  how many outputs are identical;
- the merge: greedy answers of the trained adapter on the NF4 base, unmerged (how it was trained), against the
  adapter merged into an unquantized base in the preset's `eval_dtype` (how stage 04 evaluates it).

The model is built by the project's loader from a folder that holds the configuration and no weights: the loader
creates every layer on the device (4-bit layers included), and `fill_weights` then draws each weight from a
generator seeded by its name, so the NF4 and the unquantized loads hold the same weights before quantization.
Nothing 7B is written to disk. Results go to `gpu_check.json` and `gpu_check.md` in the folder given.

    python -m mllm_safety.tools.gpu_check prepare --out .gpu/replicas     # here: processing files, no weights
    python -m mllm_safety.tools.gpu_check run --replicas .gpu/replicas --out OUT [--scale 7b|tiny]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import platform
import resource
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import TrainerCallback

from ..core.cli import run_cli
from ..core.files import write_json, write_text

# ---- config: the models checked and their checkpoints' sizes -------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A checked model: its replica family, the preset whose training and evaluation settings are used, the side
    of its synthetic training images, and the checkpoint's sizes (None: the replica spec's config is verbatim)."""

    family: str
    preset: str
    image_side: int
    sizes: dict[str, dict[str, Any]] | None


# Qwen2.5-VL-7B-Instruct's config.json (the sizes the replica shrinks)
QWEN25_VL_7B = {
    "text_config": {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "max_window_layers": 28,
        "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24], "rope_theta": 1e6},
    },
    "vision_config": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 3584,
        "fullatt_block_indexes": [7, 15, 23, 31],
    },
}
TARGETS = {
    "llava-1.5-7b": Target("llava-1.5", "llava-1.5-7b", 336, None),
    "qwen2.5-vl-7b": Target("qwen2.5-vl", "qwen2.5-vl-7b", 448, QWEN25_VL_7B),
}
WARMUP_STEPS = 1
OVER_BUDGET = "not run: the check's time budget (--budget-s) was spent"
TEXT_WORDS = 96  # words of question + answer in a typical sample (~128 tokens with the prompt format)
WEIGHT_STD = 0.02  # the checkpoints' initializer_range


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
NOT_ON_CPU = [
    "MFU (no tensor-core peak on the CPU)",
    "flash-attention (CUDA only)",
    "peak memory of one step (the CPU reports the process's peak resident memory since it started)",
    "bf16 numerics of the GPU kernels (the CPU computes in fp32, so its merge agreement is not the GPU's)",
]


# ---- prepare: weightless replica folders ---------------------------------------------------------------------------


def weightless(replica: Path, out: Path, sizes: dict[str, dict[str, Any]] | None, spec_config: Path | None) -> Path:
    """A copy of a replica without its weights: processing files, a config (the checkpoint's sizes when given),
    and an empty weights file, so the loader builds every layer itself."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    for path in replica.iterdir():
        if path.is_file() and not path.name.endswith(".safetensors") and not path.name.endswith(".index.json"):
            shutil.copyfile(path, out / path.name)
    config = json.loads((replica / "config.json").read_text(encoding="utf-8"))
    if spec_config is not None:
        config = json.loads(spec_config.read_text(encoding="utf-8"))
    for section, values in (sizes or {}).items():
        # a per-layer list sized for the replica's layers is dropped: the config class derives it again
        config[section] = {k: v for k, v in config.get(section, {}).items() if k != "layer_types"} | values
    write_json(out / "config.json", config)
    save_file({}, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def prepare(out: Path, seed: int = 0, scales: tuple[str, ...] = ("tiny", "7b")) -> list[Path]:
    """Each target at the scales asked: `<name>/tiny` (the replica's sizes), `<name>/7b` (the checkpoint's)."""
    from .replicas import REPLICAS, SPECS, build_replica

    made = []
    for name, target in TARGETS.items():
        built = build_replica(target.family, out / name / "built", seed=seed)
        spec = SPECS / REPLICAS[target.family].spec / "config.json" if target.family in REPLICAS else None
        if "tiny" in scales:
            made.append(weightless(built, out / name / "tiny", None, None))
        if "7b" in scales:
            made.append(weightless(built, out / name / "7b", target.sizes, spec))
        shutil.rmtree(built)
    return made


# ---- load: the project's loader on a weightless folder, weights drawn by name --------------------------------------


def name_seed(seed: int, name: str) -> int:
    """A generator seed for one parameter, from the run's seed and the parameter's name."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") & (2**63 - 1)


def draw(shape: tuple[int, ...], name: str, seed: int, device: torch.device) -> torch.Tensor:
    """Normal(0, WEIGHT_STD) values for one parameter, the same on every load of the same name."""
    gen = torch.Generator(device=device).manual_seed(name_seed(seed, name))
    return torch.randn(shape, generator=gen, device=device) * WEIGHT_STD


@torch.no_grad()
def fill_weights(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter drawn by name (1-D: norms' weights 1, biases 0); 4-bit layers get their weight drawn at full
    precision and quantized with the model's own bitsandbytes settings."""
    qconfig = getattr(model.config, "quantization_config", None)
    for module_name, module in model.named_modules():
        four_bit = type(module).__name__ == "Linear4bit"
        for pname, p in list(module.named_parameters(recurse=False)):
            name = f"{module_name}.{pname}" if module_name else pname
            if four_bit and pname == "weight":
                module.weight = quantized(
                    module, draw((module.out_features, module.in_features), name, seed, p.device), qconfig
                )
            elif p.dim() == 1 and pname in ("weight", "bias"):
                p.fill_(1.0 if pname == "weight" else 0.0)
            else:
                p.copy_(draw(tuple(p.shape), name, seed, p.device).to(p.dtype))
    return model


def quantized(module: torch.nn.Module, weight: torch.Tensor, qconfig: Any) -> torch.nn.Parameter:
    """A 4-bit parameter of `weight`, with the quantization config the loader used (type, double quantization,
    storage), quantized on the weight's device."""
    import bitsandbytes as bnb

    settings = qconfig.to_dict() if hasattr(qconfig, "to_dict") else dict(qconfig or {})
    storage = settings.get("bnb_4bit_quant_storage") or "uint8"
    storage = getattr(torch, storage) if isinstance(storage, str) else storage
    compute = module.compute_dtype or torch.float32
    param = bnb.nn.Params4bit(
        weight.to(compute),
        requires_grad=False,
        quant_type=settings.get("bnb_4bit_quant_type", "nf4"),
        compress_statistics=settings.get("bnb_4bit_use_double_quant", True),
        quant_storage=storage,
        module=module,
    )
    return param._quantize(weight.device)


def load_filled(folder: Path, quantization: str, seed: int, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The project's loader (`core.modeling.load_base`) on a weightless folder, then every weight drawn by name."""
    import transformers

    from ..core.modeling import load_base

    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the loader's report lists every weight as missing, by design
    try:
        model = load_base(folder, quantization, dtype=dtype)
    finally:
        transformers.logging.set_verbosity(level)
    return fill_weights(model, seed)


# ---- do: training, generation, the merge ----------------------------------------------------------------------------


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


def check_config(target: Target, folder: Path, work: Path, scale: Scale, micro: int, mix: str) -> Any:
    """The preset for the check: its training settings on the weightless model, one micro-batch a step, a
    constant learning rate, no checkpoints (and the scale's max_length)."""
    from ..core.preset import Preset

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


def parameter_count(folder: Path) -> int:
    """The model's parameters, counted on the meta device from its config (4-bit packing does not shrink it)."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    with torch.device("meta"):
        skeleton = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(folder))
    return sum(p.numel() for p in skeleton.parameters())


def peak_memory_mib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
    from ..core.modeling import find_parts
    from ..qlora_finetune.arguments import training_arguments
    from ..qlora_finetune.data import load_mixture
    from ..qlora_finetune.trainer import make_trainer

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
        "peak_memory_mib": round(peak_memory_mib(), 1),
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
    from ..core.modeling import cap_image_pixels, load_processor
    from ..core.preset import Preset
    from ..qlora_finetune.data import make_trainable

    micro = scale.micro_batch or Preset.load(target.preset).train.micro_batch_size
    runs = [("typical", micro, "sdpa"), ("typical", 2 * micro, "sdpa"), ("worst", micro, "sdpa")]
    runs += [("typical", micro, kind) for kind in attention_kinds() if kind != "sdpa"]
    if torch.cuda.is_available() and "flash_attention_2" not in attention_kinds():
        notes.append("flash-attention: not importable here, not measured")
    first = check_config(target, folder, work, scale, micro, "typical").train
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
    preset = check_config(target, folder, work, scale, size, mix)
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


def generation_items(work: Path, image_side: int, count: int) -> list[Any]:
    """`count` questions of different lengths, each with its own image."""
    from ..core.items import EvalItem

    folder = work / "generation"
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(count):
        path = folder / f"{i}.png"
        Image.new("RGB", (image_side, image_side), (20 + 13 * i, 200 - 9 * i, 90)).save(path)
        question = "What does this picture show" + " in detail" * (i % 5) + "?"
        items.append(EvalItem(f"g{i}", "check", "check", question, str(path), harmful=False))
    return items


def answer(model: Any, processor: Any, items: list[Any], fmt: str, batch: int, new: int) -> tuple[list[str], float]:
    """Greedy answers of `new` tokens, `batch` items per call, and the seconds they took."""
    from ..core.generation import Decoding, generate_batch

    model.eval()
    decoding = Decoding(max_new_tokens=new)
    sync()
    start = time.perf_counter()
    out = []
    for i in range(0, len(items), batch):
        out += generate_batch(model, processor, items[i : i + batch], fmt, decoding)
    sync()
    return out, time.perf_counter() - start


def check_generation(target: Target, model: Any, processor: Any, items: list[Any], new: int) -> list[dict[str, Any]]:
    """The same items one at a time and batched: seconds, items/s, identical outputs, non-empty outputs."""
    from ..core.preset import Preset

    fmt = Preset.load(target.preset).eval.generation_format
    answer(model, processor, items[:2], fmt, 2, new)  # warm-up
    single, t_single = answer(model, processor, items, fmt, 1, new)
    batched, t_batched = answer(model, processor, items, fmt, len(items), new)
    same = sum(a == b for a, b in zip(single, batched, strict=True))
    return [
        {"model": target.preset, "way": way, "items": len(items), "seconds": round(t, 3),
         "items_per_s": round(len(items) / t, 2), "identical": f"{same}/{len(items)}",
         "non_empty": sum(bool(a) for a in answers)}
        for way, t, answers in (
            ("one at a time", t_single, single), (f"batched, {len(items)} per call", t_batched, batched)
        )
    ]  # fmt: skip


def common_prefix(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def check_merge(
    target: Target, folder: Path, work: Path, trained: Any, processor: Any, items: list[Any], new: int, seed: int
) -> dict[str, Any]:
    """The trained adapter on its NF4 base, unmerged, against the same adapter merged into an unquantized load of
    the same weights in the preset's eval_dtype; and the NF4 base without the adapter (does the adapter matter)."""
    from peft import PeftModel

    from ..core.preset import Preset
    from ..evaluate import eval_dtype

    ev = Preset.load(target.preset).eval
    fmt = ev.generation_format
    adapter = work / "adapter" / target.preset
    trained.save_pretrained(adapter)
    unmerged, _ = answer(trained, processor, items, fmt, len(items), new)
    with trained.disable_adapter():
        plain, _ = answer(trained, processor, items, fmt, len(items), new)
    dtype = eval_dtype(ev) or (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    base = load_filled(folder, "none", seed, dtype=dtype)
    merged_model = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    merged, _ = answer(merged_model, processor, items, fmt, len(items), new)
    del base, merged_model
    n = len(items)
    return {
        "model": target.preset,
        "merged_dtype": str(dtype).removeprefix("torch."),
        "identical_merged_vs_nf4": f"{sum(a == b for a, b in zip(merged, unmerged, strict=True))}/{n}",
        "mean_common_prefix_chars": round(sum(map(common_prefix, merged, unmerged)) / n, 1),
        "mean_answer_chars": round(sum(len(a) for a in unmerged) / n, 1),
        "identical_adapter_vs_no_adapter": f"{sum(a == b for a, b in zip(plain, unmerged, strict=True))}/{n}",
    }  # fmt: skip


# ---- the memory arithmetic of a training step's worst case (docs/real-models.md) ------------------------------------

GIB = 2**30
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4 bits, an 8-bit absmax per block of 64, an fp32 one per 256 of those
LOGIT_BYTES = 2 + 4 + 4  # bf16 logits, their fp32 copy for the loss, the saved log-softmax (fp32)


def memory_estimate(preset_name: str, folder: Path, micro: int | None = None, gpus: int = 1) -> dict[str, Any]:
    """GiB of one training step in which every sample is max_length tokens: weights, trained state (fp32 weights,
    gradients, AdamW's moments: 16 bytes a trained parameter; sharded over the GPUs under ZeRO-3 for full
    fine-tuning), the logits through the loss (LOGIT_BYTES an entry), the checkpointed layer inputs and one
    layer's recomputation. An estimate: the allocator's fragmentation and the vision tower's activations come on
    top (the GPU check's `worst` row measures the real peak)."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    from ..core.modeling import find_parts
    from ..core.preset import Preset

    cfg = Preset.load(preset_name).train
    micro = micro or cfg.micro_batch_size
    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    parts, text = find_parts(model), config.get_text_config()
    linear = [
        (n, m) for n, m in model.named_modules() if n.startswith(parts.decoder + ".") and isinstance(m, torch.nn.Linear)
    ]
    in_linear = {f"{n}.weight" for n, _ in linear}
    params = dict(model.named_parameters())
    connector = sum(p.numel() for n, p in params.items() if n.startswith(parts.connectors))
    if cfg.finetune == "full":
        trained = sum(p.numel() for n, p in params.items() if n.startswith((parts.decoder, parts.lm_head)))
        trained += connector if cfg.train_projector else 0
        weights = 4 * (sum(p.numel() for p in params.values()) - trained) / gpus
        state = 16 * trained / gpus
    else:
        quantized = sum(params[n].numel() for n in in_linear) if cfg.quantization == "nf4" else 0
        weights = quantized * NF4_BYTES + 2 * (sum(p.numel() for p in params.values()) - quantized)
        lora = sum(cfg.lora_r * (m.in_features + m.out_features) for _, m in linear)
        state = 16 * (lora + (connector if cfg.train_projector else 0))
    tokens = micro * cfg.max_length
    logits = tokens * text.vocab_size * LOGIT_BYTES
    saved = text.num_hidden_layers * tokens * text.hidden_size * 2
    recompute = tokens * (8 * text.hidden_size + 4 * text.intermediate_size) * 2
    parts_gib = {"weights": weights, "trained state": state, "logits": logits, "layer inputs": saved,
                 "one layer recomputed": recompute}  # fmt: skip
    row = {"preset": preset_name, "finetune": cfg.finetune, "quantization": cfg.quantization, "gpus": gpus,
           "micro_batch": micro, "max_length": cfg.max_length}  # fmt: skip
    row |= {k: round(v / GIB, 1) for k, v in parts_gib.items()}
    row["total"] = round(sum(parts_gib.values()) / GIB, 1)
    return row


# ---- save: one JSON, one markdown table ---------------------------------------------------------------------------


def device_name() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    return f"CPU {platform.machine()}, {torch.get_num_threads()} threads"


def versions() -> dict[str, str]:
    import peft
    import transformers

    found = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}
    found["peft"] = peft.__version__
    try:
        import bitsandbytes

        found["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:
        found["bitsandbytes"] = "not installed"
    return found


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)\n"
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def markdown(report: dict[str, Any]) -> str:
    parts = [
        f"# GPU check: {report['device']}\n",
        f"scale {report['scale']}, {report['wall_s']} s, {report['versions']}\n",
    ]
    for section in ("training", "generation", "merge", "errors"):
        parts += [f"\n## {section}\n\n", table(report[section])]
    parts += ["\n## not measured here\n\n", "".join(f"- {n}\n" for n in report["notes"]) or "(nothing)\n"]
    return "".join(parts)


def save(report: dict[str, Any], out: Path) -> None:
    write_json(out / "gpu_check.json", {k: v for k, v in report.items() if k != "deadline"})
    write_text(out / "gpu_check.md", markdown(report))


# ---- run -----------------------------------------------------------------------------------------------------------


def guarded(report: dict[str, Any], what: str, step: Callable[[], Any]) -> Any:
    """Run one part; a failure is recorded (part, one line, the traceback's end) and the check goes on; past the
    deadline the part is recorded as not run."""
    if time.monotonic() > report["deadline"]:
        report["errors"].append({"part": what, "error": OVER_BUDGET, "where": ""})
        return None
    try:
        return step()
    except Exception as e:  # noqa: BLE001 - one part's failure must not cost the rest of the lease
        report["errors"].append({"part": what, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}",
                                 "where": traceback.format_exc().strip().splitlines()[-3][:200]})  # fmt: skip
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return None


def run(
    replicas: Path, out: Path, scale: str, only: list[str], seed: int = 0, budget_s: float = math.inf
) -> dict[str, Any]:
    """Every part for every target in `only`, saved after each target (a lease that ends early keeps what was
    done); a part or training row that would start after `budget_s` seconds is recorded as not run."""
    start = time.perf_counter()
    work = out / "work"
    report: dict[str, Any] = {"device": device_name(), "scale": scale, "versions": versions(), "training": [],
                              "generation": [], "merge": [], "errors": [], "notes": [], "wall_s": 0.0,
                              "deadline": time.monotonic() + budget_s}  # fmt: skip
    if not torch.cuda.is_available():
        report["notes"] += NOT_ON_CPU
    for name in only:
        check_target(report, TARGETS[name], replicas / name / scale, work, SCALES[scale], seed)
        report["wall_s"] = round(time.perf_counter() - start, 1)
        save(report, out)
    shutil.rmtree(work, ignore_errors=True)
    return report


def check_target(report: dict[str, Any], target: Target, folder: Path, work: Path, scale: Scale, seed: int) -> None:
    """Training, the merge (on the trained adapter) and generation for one model, each part guarded."""
    name = target.preset
    trained = guarded(
        report,
        f"{name} training",
        lambda: check_training(target, folder, work, scale, seed, report["notes"], report["deadline"]),
    )
    if trained is None:
        return
    rows, model, processor = trained
    report["training"] += rows
    items, new = generation_items(work, target.image_side, scale.items), scale.new_tokens
    merge = guarded(
        report, f"{name} merge", lambda: check_merge(target, folder, work, model, processor, items, new, seed)
    )
    report["merge"] += [merge] if merge else []
    model = trained = None  # the NF4 model's memory back before the unquantized load
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    generation = guarded(
        report, f"{name} generation", lambda: generation_part(target, folder, processor, items, new, seed)
    )
    report["generation"] += generation or []


def generation_part(
    target: Target, folder: Path, processor: Any, items: list[Any], new: int, seed: int
) -> list[dict[str, Any]]:
    """Generation on an unquantized load in the preset's eval_dtype (stage 04's official setting)."""
    from ..core.preset import Preset
    from ..evaluate import eval_dtype

    dtype = eval_dtype(Preset.load(target.preset).eval)
    model = load_filled(folder, "none", seed, dtype=dtype)
    rows = check_generation(target, model, processor, items, new)
    del model
    return rows


# (preset, replica folder under --replicas, micro-batches, GPUs): the rows of docs/real-models.md's table
MEMORY_ROWS = [
    ("llava-1.5-7b", "llava-1.5-7b", (8, 16), 1),
    ("qwen2.5-vl-7b", "qwen2.5-vl-7b", (4, 8), 1),
    ("qwen2.5-vl-7b-full", "qwen2.5-vl-7b", (2, 4), 4),
    ("qwen2.5-vl-7b-qwen", "qwen2.5-vl-7b", (1, 4), 8),
]


def memory_table(replicas: Path) -> list[dict[str, Any]]:
    return [
        memory_estimate(preset, replicas / folder / "7b", micro, gpus)
        for preset, folder, micros, gpus in MEMORY_ROWS
        for micro in micros
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mllm_safety.tools.gpu_check", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="write the weightless replica folders (needs the fetched tokenizers)")
    prep.add_argument("--out", type=Path, required=True)
    prep.add_argument("--scales", nargs="+", choices=list(SCALES), default=list(SCALES))
    go = sub.add_parser("run", help="measure; writes gpu_check.json and gpu_check.md into --out")
    go.add_argument("--replicas", type=Path, required=True)
    go.add_argument("--out", type=Path, required=True)
    go.add_argument("--scale", choices=("7b", "tiny"), default="7b")
    go.add_argument("--only", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    go.add_argument("--seed", type=int, default=0)
    go.add_argument("--budget-s", type=float, default=330.0, help="start no part after this many seconds")
    mem = sub.add_parser("memory", help="the worst-case memory arithmetic of the presets (a markdown table)")
    mem.add_argument("--replicas", type=Path, required=True)
    args = p.parse_args(argv)
    if args.command == "memory":
        return run_cli(lambda: print(table(memory_table(args.replicas))))
    if args.command == "prepare":
        return run_cli(lambda: print("\n".join(str(f) for f in prepare(args.out, scales=tuple(args.scales)))))

    def go_run() -> None:
        report = run(args.replicas, args.out, args.scale, args.only, args.seed, args.budget_s)
        print(markdown(report))

    return run_cli(go_run)


if __name__ == "__main__":
    sys.exit(main())
