"""The checked models: their replicas without weights (the checkpoints' sizes, the real processing files), loaded by
the project's loader and filled with weights drawn by name, so that every load of the same name and seed holds the
same weights, quantized or not."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...core.files import write_json


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
WEIGHT_STD = 0.02  # the checkpoints' initializer_range


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
    from ..replicas import REPLICAS, SPECS, build_replica

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

    from ...core.modeling import load_base

    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the loader's report lists every weight as missing, by design
    try:
        model = load_base(folder, quantization, dtype=dtype)
    finally:
        transformers.logging.set_verbosity(level)
    return fill_weights(model, seed)


def parameter_count(folder: Path) -> int:
    """The model's parameters, counted on the meta device from its config (4-bit packing does not shrink it)."""
    from ...core.modeling import skeleton

    return sum(p.numel() for p in skeleton(folder).parameters())
