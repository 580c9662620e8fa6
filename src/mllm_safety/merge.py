"""Merge a LoRA adapter into its base model, for users who want plain weights (not on the default path: runs
keep adapters only). CLI: `python -m mllm_safety.merge --base MODEL --adapter DIR --out DIR`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from .files import run_cli


def merge(base: str | Path, adapter: str | Path, out: str | Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Load the base unquantized, apply the adapter (and trained connector), merge, save model and processor."""
    from peft import PeftModel

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new folder for the merged model")
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=dtype)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(out)
    AutoProcessor.from_pretrained(base).save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m mllm_safety.merge", description=__doc__)
    p.add_argument("--base", required=True, help="the base model (hub id or folder) the adapter was trained on")
    p.add_argument("--adapter", required=True, help="runs/<preset>/03_finetune/<mixture>/adapter")
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16")
    args = p.parse_args(argv)
    return run_cli(lambda: print(merge(args.base, args.adapter, args.out, getattr(torch, args.dtype))))


if __name__ == "__main__":
    raise SystemExit(main())
