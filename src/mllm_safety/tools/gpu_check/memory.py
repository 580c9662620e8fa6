"""The memory arithmetic of a training step's worst case, per preset (docs/real-models.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

GIB = 2**30
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4 bits, an 8-bit absmax per block of 64, an fp32 one per 256 of those
LOGIT_BYTES = 2 + 4 + 4  # bf16 logits, their fp32 copy for the loss, the saved log-softmax (fp32)


def memory_estimate(preset_name: str, folder: Path, micro: int | None = None, gpus: int = 1) -> dict[str, Any]:
    """GiB of one training step in which every sample is max_length tokens: weights, trained state (fp32 weights,
    gradients, AdamW's moments: 16 bytes a trained parameter; sharded over the GPUs under ZeRO-3 for full
    fine-tuning), the logits through the loss (LOGIT_BYTES an entry), the checkpointed layer inputs and one
    layer's recomputation. An estimate: the allocator's fragmentation and the vision tower's activations come on
    top (the GPU check's `worst` row measures the real peak)."""
    from ...core.modeling import find_parts, full_finetune_trains, in_part, skeleton
    from ...core.preset import Preset

    cfg = Preset.load(preset_name).train
    micro = micro or cfg.micro_batch_size
    model = skeleton(folder)
    parts, text = find_parts(model), model.config.get_text_config()
    linear = [
        (n, m) for n, m in model.named_modules() if n.startswith(parts.decoder + ".") and isinstance(m, torch.nn.Linear)
    ]
    in_linear = {f"{n}.weight" for n, _ in linear}
    params = dict(model.named_parameters())
    connector = sum(p.numel() for n, p in params.items() if in_part(n, parts.connectors))
    if cfg.finetune == "full":
        trains = full_finetune_trains(parts, cfg.train_projector)
        trained = sum(p.numel() for n, p in params.items() if in_part(n, trains))
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
    parts_gib = {
        "weights": weights,
        "trained state": state,
        "logits": logits,
        "layer inputs": saved,
        "one layer recomputed": recompute,
    }
    row = {
        "preset": preset_name,
        "finetune": cfg.finetune,
        "quantization": cfg.quantization,
        "gpus": gpus,
        "micro_batch": micro,
        "max_length": cfg.max_length,
    }
    row |= {k: round(v / GIB, 1) for k, v in parts_gib.items()}
    row["total"] = round(sum(parts_gib.values()) / GIB, 1)
    return row


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
