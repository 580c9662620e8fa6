"""Loading any image-text-to-text model for fine-tuning: quantization (NF4, int8, none), the parts of the model
found by role rather than by name, and LoRA on every linear layer of the language model only.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig

from .compat import allow_processors_without_video
from .files import DataFormatError

log = logging.getLogger(__name__)
QUANTIZATIONS = ("nf4", "int8", "none")


@dataclass(frozen=True)
class Parts:
    """Dotted module names of a model's parts: language model, vision tower, connector(s), output head."""

    decoder: str
    vision: str
    connectors: tuple[str, ...]
    lm_head: str


def _name_of(model: torch.nn.Module, module: torch.nn.Module) -> str:
    return next(name for name, mod in model.named_modules() if mod is module)


# Families whose connector is not a sibling of the language model (model_type -> module names under the model).
CONNECTORS = {"qwen2_vl": ("merger",), "qwen2_5_vl": ("merger",)}  # Qwen's merger sits inside the vision tower


def find_parts(model: torch.nn.Module) -> Parts:
    """Locate the parts through transformers' own accessors (get_decoder, get_encoder('image'), output embeddings):
    the connector is what sits beside the language model and the vision tower, or, for the families of CONNECTORS,
    the named module inside the tower."""
    decoder = _name_of(model, model.get_decoder())
    vision = _name_of(model, model.get_encoder(modality="image"))
    head = _name_of(model, model.get_output_embeddings())
    inside = CONNECTORS.get(getattr(model.config, "model_type", ""), ())
    if inside:
        return Parts(decoder, vision, tuple(f"{vision}.{name}" for name in inside), head)
    parent = decoder.rpartition(".")[0]
    siblings = dict(model.get_submodule(parent).named_children()) if parent else {}
    known = {decoder, vision}
    connectors = tuple(f"{parent}.{n}" for n in siblings if f"{parent}.{n}" not in known)
    return Parts(decoder, vision, connectors, head)


def skeleton(model_path: str | Path, trust_remote_code: bool = False) -> torch.nn.Module:
    """The model built from its config on the meta device: every module and shape, no weights, no memory."""
    config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        return AutoModelForImageTextToText.from_config(config, trust_remote_code=trust_remote_code)


def parts_from_config(model_path: str | Path, trust_remote_code: bool = False) -> Parts:
    """The parts of a model without loading its weights."""
    return find_parts(skeleton(model_path, trust_remote_code))


def full_finetune_trains(parts: Parts, train_projector: bool) -> tuple[str, ...]:
    """The parts full fine-tuning trains: the language model, its head and (unless frozen) the connector."""
    return (parts.decoder, parts.lm_head, *(parts.connectors if train_projector else ()))


def in_part(name: str, part_names: tuple[str, ...]) -> bool:
    """True when the dotted parameter or module name lies inside one of the parts."""
    return any(name == t or name.startswith(t + ".") for t in part_names)


def compute_dtype() -> torch.dtype:
    """bf16 on a CUDA GPU that supports it, fp32 otherwise (the CPU)."""
    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32


def quantization_config(kind: str, parts: Parts) -> BitsAndBytesConfig | None:
    """bitsandbytes config for the language model only: the vision tower, connector and head stay unquantized."""
    if kind not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {kind!r}")
    if kind == "none":
        return None
    skip = [parts.vision, *parts.connectors, parts.lm_head]
    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype(),
        bnb_4bit_quant_storage=compute_dtype(),
        llm_int8_skip_modules=skip,
    )


def attention_implementation() -> str:
    """flash_attention_2 when installed on a CUDA GPU, SDPA otherwise."""
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


# Families the toolkit does not support (model_type -> why): refused before any weight is loaded.
UNSUPPORTED = {
    "paligemma": "PaliGemma has no chat template and its processor writes the prompt layout itself (image tokens, "
    "<bos>, prefix, newline) and refuses text-only inputs; stage 03's rendering and labels need a chat template",
}


def resolve_model_path(model_path: str | Path) -> str:
    """A local folder is always local (and must hold a model: config.json, weights files not cut short); a path that
    does not exist is an error, unless it has the exact form of a hub id (`org/name`, no local folder `org`) and the
    hub is not switched off (HF_HUB_OFFLINE)."""
    path = Path(model_path)
    if path.exists():
        if not (path / "config.json").is_file():
            raise DataFormatError(
                f"{path}: not a model folder (no config.json). Fix: point model_path at a saved model"
            )
        check_weights(path)
        return str(path)
    text = str(model_path)
    hub_form = re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text) is not None
    local_parent = Path(text).parent.exists() and str(Path(text).parent) != "."
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if not hub_form or local_parent or offline:
        if local_parent:
            reason = "its parent folder exists here, so it is read as a local path"
        elif hub_form:
            reason = "and the hub is off (HF_HUB_OFFLINE)"
        else:
            reason = "and it is not a hub id (org/name)"
        raise FileNotFoundError(f"{model_path}: no such folder, {reason}. Fix: check model_path in the preset")
    return text


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file is not whole (a download or copy cut short), read from its header only, or None."""
    size = path.stat().st_size
    with path.open("rb") as f:
        length = int.from_bytes(f.read(8), "little")
        if size < 8 or 8 + length > size:
            return f"truncated: {size} bytes, shorter than its own header"
        try:
            tensors = [t for k, t in json.loads(f.read(length)).items() if k != "__metadata__"]
            end = 8 + length + max((t["data_offsets"][1] for t in tensors), default=0)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError):
            return "its header is not a safetensors header"
    return f"truncated: {size} bytes, its header describes {end}" if end > size else None


def check_weights(folder: Path) -> None:
    """Refuse a model folder whose weights files are cut short, naming the file, before any weight loads."""
    for path in sorted(folder.glob("*.safetensors")):
        if problem := safetensors_problem(path):
            raise DataFormatError(f"{path}: {problem}. Fix: download or save the model again")


def check_supported(model_path: str | Path, trust_remote_code: bool = False) -> None:
    """Refuse a family the toolkit does not support, naming it and the missing piece, before loading weights."""
    model_path = resolve_model_path(model_path)
    model_type = getattr(AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code), "model_type", "")
    if model_type in UNSUPPORTED:
        raise DataFormatError(f"{model_path}: model family {model_type!r} is not supported: {UNSUPPORTED[model_type]}")


def load_processor(model_path: str | Path, trust_remote_code: bool = False) -> Any:
    """The model's processor (families that also handle video load without torchvision: core.compat)."""
    allow_processors_without_video()
    return AutoProcessor.from_pretrained(model_path, trust_remote_code=trust_remote_code)


def cap_image_pixels(processor: Any, max_pixels: int) -> Any:
    """Set the pixel budget of a processor that resizes to one (Qwen2-VL, Qwen2.5-VL: `size.longest_edge`, in
    pixels); 0 keeps its own. A processor without a budget is refused: image_max_side caps any other."""
    if not max_pixels:
        return processor
    images = processor.image_processor
    size = getattr(images, "size", None)
    if getattr(images, "merge_size", None) is None or getattr(size, "longest_edge", None) is None:
        raise DataFormatError(
            f"image_max_pixels {max_pixels}: {type(images).__name__} has no pixel budget (Qwen2-VL and Qwen2.5-VL "
            "have one). Fix: image_max_pixels: 0, and image_max_side to cap the longer side"
        )
    size.longest_edge = max_pixels
    return processor


def load_model(
    model_path: str | Path,
    quantization: str = "nf4",
    trust_remote_code: bool = False,
    dtype: torch.dtype | None = None,
) -> tuple[torch.nn.Module, Any]:
    """Load model and processor from a hub id or a local folder, quantized as asked (dtype: load_base)."""
    check_supported(model_path, trust_remote_code)
    model = load_base(model_path, quantization, trust_remote_code, dtype)
    return model, load_processor(model_path, trust_remote_code)


def load_base(
    model_path: str | Path,
    quantization: str = "nf4",
    trust_remote_code: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.nn.Module:
    """Load the model alone (no processor), quantized as asked, on the GPU when there is one. The unquantized
    weights are held in `dtype`, by default the compute dtype (full fine-tuning asks for fp32 master weights)."""
    if Path(model_path).is_dir():
        check_weights(Path(model_path))
    parts = parts_from_config(model_path, trust_remote_code)
    kwargs: dict[str, Any] = {"dtype": dtype or compute_dtype(), "attn_implementation": attention_implementation()}
    qconfig = quantization_config(quantization, parts)
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
    if torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_DEEPSPEED") != "true":
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", torch.cuda.current_device()))}
    try:
        model = AutoModelForImageTextToText.from_pretrained(model_path, trust_remote_code=trust_remote_code, **kwargs)
    except SafetensorError as e:  # a weights file damaged in a way its header does not show
        raise DataFormatError(f"{model_path}: a weights file cannot be read ({e}). Fix: download it again") from None
    if quantization == "nf4" and not torch.cuda.is_available():
        check_cpu_4bit(model, model_path)
    log.info("loaded %s (%s, %s, %s)", model_path, quantization, kwargs["dtype"], kwargs["attn_implementation"])
    return model


CPU_4BIT_BLOCK = 64  # bitsandbytes' CPU 4-bit kernels quantize inputs in blocks of 64


def check_cpu_4bit(model: torch.nn.Module, model_path: str | Path) -> None:
    """bitsandbytes' CPU 4-bit inference fails on linear layers narrower than one block; say so before it does."""
    narrow = [
        n for n, m in model.named_modules() if type(m).__name__ == "Linear4bit" and m.in_features % CPU_4BIT_BLOCK
    ]
    if narrow:
        raise ValueError(
            f"{model_path}: NF4 on the CPU needs linear layers whose input width is a multiple of {CPU_4BIT_BLOCK}; "
            f"{narrow[0]} has {dict(model.named_modules())[narrow[0]].in_features}. Build the model wider "
            "(e.g. lm_hidden: 64) or set quantization: none"
        )


def lora_targets(model: torch.nn.Module) -> list[str]:
    """Every linear layer inside the language model (quantized linears included), by type, not by name."""
    decoder = find_parts(model).decoder
    return sorted(
        name
        for name, mod in model.named_modules()
        if name.startswith(decoder + ".") and isinstance(mod, torch.nn.Linear)
    )


def add_lora(
    model: torch.nn.Module, r: int, alpha: int, dropout: float, train_projector: bool, gradient_checkpointing: bool
) -> torch.nn.Module:
    """Wrap the model with LoRA adapters on the language model; the connector is trained fully or frozen."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    parts = find_parts(model)
    ckpt = {"use_reentrant": False}
    if getattr(model, "is_quantized", False):
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing, gradient_checkpointing_kwargs=ckpt
        )
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=ckpt)
        model.enable_input_require_grads()
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=lora_targets(model),
        bias="none",
        modules_to_save=list(parts.connectors) if train_projector else None,
    )
    return get_peft_model(model, config)


# The dtype the unquantized weights are held in, by what is trained. LoRA trains fp32 adapters on a base held in
# the compute dtype. Full fine-tuning trains the weights themselves: they are held in fp32 (master weights, AdamW's
# state in fp32 with them) while the Trainer's autocast computes in bf16; bf16 weights would round a step of
# lr 2e-6 away (their spacing is ~1e-4 near 0.02).
WEIGHTS_DTYPE: dict[str, torch.dtype | None] = {"lora": None, "full": torch.float32}
# Bytes per parameter of full fine-tuning with fp32 master weights: trained (weight, gradient, AdamW's two moments,
# all fp32) and frozen (the fp32 weight alone); activations come on top.
FULL_BYTES = {"trained": 16, "frozen": 4}


def full_finetune_bytes(model_path: str | Path, train_projector: bool, trust_remote_code: bool = False) -> int:
    """Weights, gradients and optimizer state of full fine-tuning (FULL_BYTES), counted on the meta device."""
    model = skeleton(model_path, trust_remote_code)
    trained = full_finetune_trains(find_parts(model), train_projector)
    return sum(
        p.numel() * FULL_BYTES["trained" if in_part(n, trained) else "frozen"] for n, p in model.named_parameters()
    )


def check_full_fits(need: int, available: int, processes: int, model_path: str | Path) -> None:
    """Refuse full fine-tuning on one process when its weights and optimizer state alone exceed the GPU's memory."""
    if processes == 1 and need > available:
        raise DataFormatError(
            f"{model_path}: full fine-tuning holds fp32 weights, gradients and AdamW state, {need / 2**30:.0f} GiB "
            f"before activations; this GPU has {available / 2**30:.0f} GiB. Fix: launch on several GPUs with "
            "DeepSpeed ZeRO-3 (accelerate launch --config_file configs/accelerate_zero3.yaml ...), or finetune: lora"
        )


def full_finetune(model: torch.nn.Module, train_projector: bool, gradient_checkpointing: bool) -> torch.nn.Module:
    """Make every weight of the language model trainable (and of the connector, unless train_projector is off);
    the vision tower stays frozen, as in MIS's full fine-tuning recipe."""
    trained = full_finetune_trains(find_parts(model), train_projector)
    for name, p in model.named_parameters():
        p.requires_grad = in_part(name, trained)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return model


def merge_adapter(base: str | Path, adapter: str | Path, out: str | Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Load the base unquantized, apply the adapter (and trained connector), merge, save model and processor."""
    from peft import PeftModel

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new folder for the merged model")
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=dtype)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(out)
    load_processor(base).save_pretrained(out)
    return out
