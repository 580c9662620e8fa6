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
import math
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ...core.cli import run_cli
from ...core.files import write_json, write_text
from .answers import check_merge, generation_items, generation_part
from .memory import memory_estimate, memory_table
from .models import TARGETS, WEIGHT_STD, Target, load_filled, parameter_count, prepare
from .training import OVER_BUDGET, SCALES, Scale, check_training

__all__ = [
    "OVER_BUDGET",
    "TARGETS",
    "WEIGHT_STD",
    "load_filled",
    "main",
    "memory_estimate",
    "parameter_count",
    "prepare",
    "run",
]

NOT_ON_CPU = [
    "MFU (no tensor-core peak on the CPU)",
    "flash-attention (CUDA only)",
    "peak memory of one step (the CPU reports the process's peak resident memory since it started)",
    "bf16 numerics of the GPU kernels (the CPU computes in fp32, so its merge agreement is not the GPU's)",
]


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
        error = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        where = traceback.format_exc().strip().splitlines()[-3][:200]
        report["errors"].append({"part": what, "error": error, "where": where})
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
    report: dict[str, Any] = {
        "device": device_name(),
        "scale": scale,
        "versions": versions(),
        **{section: [] for section in ("training", "generation", "merge", "errors", "notes")},
        "wall_s": 0.0,
        "deadline": time.monotonic() + budget_s,
    }
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
