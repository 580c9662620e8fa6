"""One-at-a-time (the official evaluation's way) vs batched generation: same greedy outputs, time ratio.

A tiny LLaVA (the test suite's kind) answers the organism's world's benchmark prompts on the CPU. On a GPU the
measurement is `make gpu-check` (a 7B configuration with the replica's real tokenizer: benchmarks/README.md);
this script refuses to run there rather than describe a 7B model with a toy tokenizer.

    .venv/bin/python benchmarks/bench_generate.py [--items 32] [--batch 16] [--new 32]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from mllm_safety.core.generation import Decoding, generate_batch
from mllm_safety.core.prompts import VICUNA_SYSTEM
from mllm_safety.core.world import build_world
from mllm_safety.data import load_benchmark


def miniature_items(tmp: Path, n: int) -> list:
    """n items spread over the organism's world's MM-SafetyBench (with images) and XSTest (text-only)."""
    data = build_world(tmp / "data")
    items = load_benchmark("mm_safetybench", data / "mm_safetybench") + load_benchmark("xstest", data / "xstest")
    return [items[k] for k in range(0, len(items), max(1, len(items) // n))][:n]


def cpu_setup(tmp: Path, n: int):
    """A tiny LLaVA, as in the tests."""
    from mllm_safety.core.modeling import load_model
    from mllm_safety.core.tiny import build_tiny_llava

    items = miniature_items(tmp, n)
    model, processor = load_model(build_tiny_llava(tmp / "tiny", [VICUNA_SYSTEM] + [it.prompt for it in items]), "none")
    return model.eval(), processor, items, "tiny LLaVA (random init, fp32)"


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=32)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--new", type=int, default=32, help="max new tokens (greedy)")
    args = p.parse_args()
    if torch.cuda.is_available():
        raise SystemExit(
            "bench_generate.py measures the CPU path; on a GPU run `make gpu-check` (benchmarks/README.md)"
        )
    decoding = Decoding(max_new_tokens=args.new)
    with tempfile.TemporaryDirectory() as tmp:
        model, processor, items, what = cpu_setup(Path(tmp), args.items)

        def answer(chunk: list) -> list[str]:
            return generate_batch(model, processor, chunk, "vicuna_v1", decoding)

        answer(items[:2])  # warm-up, not timed
        one, t_one = timed(lambda: [answer([it])[0] for it in items])
        batched, t_batch = timed(
            lambda: [r for k in range(0, len(items), args.batch) for r in answer(items[k : k + args.batch])]
        )
    device = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    same = sum(a == b for a, b in zip(one, batched, strict=True))
    print(
        f"device: {device}; model: {what}; {len(items)} items "
        f"({sum(it.image is not None for it in items)} with images), greedy, {args.new} new tokens"
    )
    print(f"one at a time          {t_one:8.2f} s  ({len(items) / t_one:6.1f} items/s)")
    print(f"batched (batch {args.batch:>3})    {t_batch:8.2f} s  ({len(items) / t_batch:6.1f} items/s)")
    print(f"speed-up               {t_one / t_batch:8.1f} x")
    print(f"identical outputs      {same}/{len(items)}")


if __name__ == "__main__":
    main()
