"""The model organism's training cost per language-model width: one epoch of its step 1 (text alignment, the
language model trained) and of its step 3 (captions, the connector trained through the frozen language model), on
one thread, with the toy preset's world and data. From these, the whole stage 00 and the studies scale roughly by
the same factor (their time is the language model's forward and backward passes).

    .venv/bin/python benchmarks/bench_organism_width.py [--widths 128 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from mllm_safety.core import world as tw
from mllm_safety.core.preset import Preset
from mllm_safety.model_organism.training import CONNECTOR, LM, build_model, encode_all, fit, only_train


def timed_epoch(model, samples, params, cfg, desc) -> tuple[int, float]:
    """Tokens in one epoch and its wall time in seconds."""
    start = time.perf_counter()
    fit(model, samples, params, 1, cfg, desc)
    return sum(len(s["input_ids"]) for s in samples), time.perf_counter() - start


def measure(width: int, root: Path) -> dict[str, float]:
    """One width: the language model's parameters and one epoch of steps 1 and 3, timed."""
    cfg = Preset.load("toy", data_root=str(root / "data"), runs_root=str(root / "runs"), lm_hidden=width).organism
    tw.ensure_world(cfg.data_root, seed=cfg.seed)
    world = tw.make_world(cfg.seed)
    model, processor = build_model(cfg)
    text = encode_all(processor, tw.text_alignment(world, cfg.text_alignment), Path(cfg.data_root))
    captions_dir = root / f"captions_{width}"
    captions_dir.mkdir()
    captions = encode_all(processor, tw.caption_records(captions_dir, cfg.seed), captions_dir)
    text_tokens, text_s = timed_epoch(model, text, only_train(model, LM), cfg, f"width {width}: step 1")
    caption_tokens, caption_s = timed_epoch(
        model, captions, only_train(model, CONNECTOR), cfg, f"width {width}: step 3"
    )
    return {
        "width": width,
        "lm_params_m": sum(p.numel() for n, p in model.named_parameters() if n.startswith(LM)) / 1e6,
        "step1_tok_s": text_tokens / text_s,
        "step1_min": text_s * cfg.text_epochs / 60,
        "step3_tok_s": caption_tokens / caption_s,
        "step3_min": caption_s * cfg.caption_epochs / 60,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(w, Path(tmp)) for w in args.widths]
    print(f"\nCPU {platform.machine()}, {args.threads} thread(s), toy preset's epochs")
    print("| lm_hidden | LM parameters | step 1 tokens/s | step 1, all epochs | step 3 tokens/s | step 3, all epochs |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['width']} | {r['lm_params_m']:.2f} M | {r['step1_tok_s']:,.0f} | {r['step1_min']:.1f} min "
            f"| {r['step3_tok_s']:,.0f} | {r['step3_min']:.1f} min |"
        )


if __name__ == "__main__":
    main()
