"""QLoRA training throughput and memory: tokens/s, estimated model FLOPs utilisation, peak memory.

Each sample is 576 image tokens + 128 text tokens (LLaVA-1.5 at 336 px), gradient checkpointing on, LoRA r=128
on every linear layer of the language model, the projector trained; micro-batches 1, 4 and 16.
On the CPU: a tiny LLaVA (336 px images, hidden size 64), to check the path and how cost grows. The GPU
measurement is `make gpu-check`, which trains through stage 03's own Trainer (its bf16 autocast, collator and
sampler) on the 7B configurations; this script times bare optimizer steps and refuses to run on a GPU, where
its numbers would not describe training.

    .venv/bin/python benchmarks/bench_train.py [--steps 3] [--micro 1 4 16]
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from mllm_safety.core.modeling import add_lora, load_base

IMAGE_TOKENS, TEXT_TOKENS = 576, 128


def tiny_config() -> LlavaConfig:
    """The same architecture at toy size, with 336 px images so that samples have 576 image tokens."""
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=336,
        patch_size=14,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        pad_token_id=0,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=3,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )


def batch(config: LlavaConfig, micro: int, device: torch.device) -> dict[str, torch.Tensor]:
    """micro samples of <image>x576 followed by 128 random text tokens, all text tokens trained."""
    gen = torch.Generator().manual_seed(0)
    text = torch.randint(10, config.text_config.vocab_size - 100, (micro, TEXT_TOKENS), generator=gen)
    image = torch.full((micro, IMAGE_TOKENS), config.image_token_id)
    ids = torch.cat([image, text], dim=1)
    labels = torch.cat([torch.full_like(image, -100), text], dim=1)
    size = config.vision_config.image_size
    pixels = torch.randn(micro, 3, size, size, generator=gen)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels, "pixel_values": pixels}
    return {k: v.to(device) for k, v in out.items()}


def build(config: LlavaConfig, folder: Path, lora_r: int) -> torch.nn.Module:
    """Save a random model with this config, load it through the training code path (NF4), add LoRA."""
    torch.manual_seed(0)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    LlavaForConditionalGeneration(config).to(dtype).save_pretrained(folder)
    model = load_base(folder, "nf4")
    return add_lora(model, lora_r, 2 * lora_r, 0.05, train_projector=True, gradient_checkpointing=True)


def measure(model: torch.nn.Module, inputs: dict[str, torch.Tensor], steps: int) -> tuple[float, float]:
    """Seconds per optimizer step (after one warm-up step) and peak memory in MiB."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    for step in range(steps + 1):
        if step == 1:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
        model(**inputs).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (time.perf_counter() - start) / steps, peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--micro", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--lora_r", type=int, default=128)
    args = p.parse_args()
    if torch.cuda.is_available():
        raise SystemExit("bench_train.py measures the CPU path; on a GPU run `make gpu-check` (benchmarks/README.md)")
    config, device = tiny_config(), torch.device("cpu")
    name = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    with tempfile.TemporaryDirectory() as tmp:
        model = build(config, Path(tmp) / "model", args.lora_r)
        with torch.device("meta"):
            params = sum(p.numel() for p in LlavaForConditionalGeneration(config).parameters())
        what = "tiny LLaVA"
        print(
            f"device: {name}; model: {what} ({params / 1e6:.1f}M parameters), NF4 + LoRA r={args.lora_r}, "
            f"gradient checkpointing; {IMAGE_TOKENS}+{TEXT_TOKENS} tokens/sample"
        )
        print("| micro-batch | s/step | tokens/s | peak memory (MiB) |\n|---|---|---|---|")
        for micro in args.micro:
            seconds, peak = measure(model, batch(config, micro, device), args.steps)
            tokens = micro * (IMAGE_TOKENS + TEXT_TOKENS) / seconds
            print(f"| {micro} | {seconds:.3f} | {tokens:,.0f} | {peak:,.0f} |")


if __name__ == "__main__":
    main()
