"""Stage 03, QLoRA fine-tuning: post-hoc LoRA on an image-text-to-text model, one adapter per stage-02 mixture.

Defaults are the paper's LLaVA-1.5 recipe (docs/protocol.md §1.3, settings: `core.config.TrainConfig`); NF4
quantization lets it run on one GPU. Labels (what is trained, the rejection samples' masked end of turn):
`core.labels`; model loading and LoRA placement: `core.modeling`.
CLI: `python -m mllm_safety.qlora_finetune --preset toy`; several GPUs: `accelerate launch -m
mllm_safety.qlora_finetune --preset ...`; merged weights: `python -m mllm_safety.qlora_finetune merge --base
MODEL --adapter DIR --out DIR`. Every run lives in runs/<preset>/03_qlora_finetune/<mixture>/: adapter/ (peft
format, the connector included when trained) or, with `finetune: full` (every language-model and connector
weight, MIS's recipe), model/ (a whole model with its processor), checkpoints/ (resumable), config.json,
log_history.jsonl, metrics.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformers import TrainerCallback, set_seed

from ..core.cli import run_cli, stage_main
from ..core.config import TrainConfig
from ..core.files import DataFormatError, write_json, write_text
from ..core.fingerprints import fingerprint, source_fingerprint
from ..core.modeling import (
    WEIGHTS_DTYPE,
    cap_image_pixels,
    check_full_fits,
    find_parts,
    full_finetune_bytes,
    load_model,
    merge_adapter,
)
from ..core.names import display_label
from ..core.preset import Preset
from ..core.results import StageResult
from ..core.runs import TRAINED, is_finished, run_lock, start_run
from .arguments import (
    CONFIG_TO_TRAINER,
    FIXED,
    check_config,
    config_to_trainer,
    is_main_process,
    processes,
    training_arguments,
)
from .data import MixtureDataset, ModalityLengthSampler, label_preview, load_mixture, make_trainable, mixture_path
from .record import run_metrics, save_trained, write_metrics
from .trainer import make_trainer, train_from_last_checkpoint

__all__ = [
    "CONFIG_TO_TRAINER",
    "FIXED",
    "MixtureDataset",
    "ModalityLengthSampler",
    "TrainResult",
    "config_to_trainer",
    "label_preview",
    "main",
    "results_table",
    "run",
    "train_mixture",
    "training_arguments",
    "what_we_saw",
]
log = logging.getLogger(__name__)
# Per finetune kind: bump when a code change changes what training makes from the same inputs (finished runs are
# redone). 2: the image tag in front in LLaVA formats, control-token strings in text skipped, eos_rule;
# full 3: fp32 master weights under bf16 autocast (a GPU run made before trained bf16 weights).
RECIPE = {"lora": 2, "full": 3}


def training_inputs(cfg: TrainConfig, mix: str) -> dict[str, str]:
    """Fingerprints of what a run trains from: the mixture file, the base weights and the recipe's version (the
    images the mixture names are raw data, not fingerprinted)."""
    return {
        "mixture": fingerprint(mixture_path(cfg, mix)),
        "base": source_fingerprint(cfg.model_path),
        "recipe": str(RECIPE[cfg.finetune]),
    }


def train_mixture(
    cfg: TrainConfig,
    mix: str,
    callbacks: list[TrainerCallback] | None = None,
    quiet: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fine-tune on one mixture; resumes from the last checkpoint; a finished run of the same config and inputs
    (mixture, base weights: their content) is reused, never overwritten; overwrite trains again. The main process
    holds the run folder's lock. quiet: no per-step bar or log lines (the studies run dozens under their own bar)."""
    check_config(cfg)
    out = cfg.stage_dir / mix
    run_cfg = {**{k: v for k, v in cfg.to_dict().items() if k != "train_mixes"}, "mixture": mix}
    inputs = training_inputs(cfg, mix)
    folder, marker = TRAINED[cfg.finetune]
    with run_lock(out) if is_main_process() else nullcontext():
        if not overwrite and is_finished(out, run_cfg, inputs=inputs) and (out / folder / marker).is_file():
            log.info("%s is finished with this config and these inputs; reusing it", out)
            return json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        if is_main_process():
            start_run(out, run_cfg, overwrite, inputs=inputs)
        return train_and_save(cfg, mix, out, callbacks, quiet)


def train_and_save(
    cfg: TrainConfig, mix: str, out: Path, callbacks: list[TrainerCallback] | None, quiet: bool
) -> dict[str, Any]:
    """Train one mixture into out/ (resuming from its last checkpoint) and save the weights and the metrics."""
    folder = TRAINED[cfg.finetune][0]
    set_seed(cfg.seed)
    if cfg.finetune == "full" and torch.cuda.is_available():
        need = full_finetune_bytes(cfg.model_path, cfg.train_projector, cfg.trust_remote_code)
        check_full_fits(need, torch.cuda.get_device_properties(0).total_memory, processes(), cfg.model_path)
    dtype = WEIGHTS_DTYPE[cfg.finetune]
    model, processor = load_model(cfg.model_path, cfg.quantization, cfg.trust_remote_code, dtype)
    processor = cap_image_pixels(processor, cfg.image_max_pixels)
    parts = find_parts(model)
    dataset, records = load_mixture(cfg, mix, processor)
    model = make_trainable(cfg, model)
    args = training_arguments(cfg, out)
    pad_id = processor.tokenizer.pad_token_id
    trainer = make_trainer(cfg, model, pad_id, parts.connectors, dataset, args, callbacks, quiet)
    resume, seen_before, wall = train_from_last_checkpoint(trainer)
    if not trainer.is_world_process_zero():
        return {}
    save_trained(cfg, model, processor, out / folder)
    write_text(out / "log_history.jsonl", "".join(json.dumps(r) + "\n" for r in trainer.state.log_history))
    metrics = run_metrics(cfg, mix, trainer, dataset, records, wall, resume, seen_before)
    write_json(out / "metrics.json", metrics)
    return metrics


@dataclasses.dataclass
class TrainResult(StageResult):
    """Stage 03's runs: each trained mixture's metrics (records kept, loss, steps, throughput, memory, time)."""

    runs: dict[str, dict[str, Any]]

    def what_we_saw(self) -> str:
        return what_we_saw(self)


def run(preset: Preset, overwrite: bool = False) -> TrainResult:
    """Train one adapter per mixture in train_mixes (each mixture's folder guards its own run)."""
    cfg = preset.train
    check_config(cfg)
    if not cfg.train_mixes:
        raise DataFormatError("train_mixes is empty. Fix: name at least one mixture written by stage 02")
    missing = [str(mixture_path(cfg, m)) for m in cfg.train_mixes if not mixture_path(cfg, m).is_file()]
    if missing:
        raise FileNotFoundError(f"no such mixture: {', '.join(missing)}. Fix: run stage 02, or check train_mixes")
    if is_main_process():
        write_json(cfg.stage_dir / "config.json", cfg.to_dict())
    results = {mix: train_mixture(cfg, mix, overwrite=overwrite) for mix in cfg.train_mixes}
    metrics = write_metrics(cfg, results) if is_main_process() else {}
    return TrainResult(results, folder=cfg.stage_dir, metrics=metrics)


COST_COLUMNS = [
    "records",
    "samples",
    "mean_loss",
    "last_logged_loss",
    "steps",
    "trained_tokens",
    "tokens_per_second",
    "peak_memory_mb",
    "wall_time_s",
]


def results_table(res: TrainResult) -> pd.DataFrame:
    """One row per trained mixture (short labels): records, samples kept, loss, steps, throughput, memory, time."""
    table = pd.DataFrame(res.runs).T.reindex(columns=COST_COLUMNS).astype(float).round(3)
    counts = ["records", "samples", "steps", "trained_tokens"]
    table[counts] = table[counts].astype("Int64")  # counts shown as counts, not 1130.0
    table[["peak_memory_mb", "wall_time_s"]] = table[["peak_memory_mb", "wall_time_s"]].round(1)
    table.index = [display_label(m) for m in table.index]
    return table.rename_axis("mixture")


def what_we_saw(res: TrainResult) -> str:
    """How the runs went, from their metrics: records kept, loss, cost."""
    lines = []
    for mix, m in res.runs.items():
        skipped = sum(v for k, v in m.items() if k.startswith("skipped_"))
        lines.append(
            f"- `{display_label(mix)}`: {m['samples']} of {m['records']} records trained ({skipped} skipped), "
            f"{m['steps']} optimizer steps, loss {m['mean_loss']:.3f} on average and "
            f"{m['last_logged_loss']:.4f} at the last logged step, {m['wall_time_s']:.0f} s."
        )
    return "\n".join(lines)


# ---- CLI ------------------------------------------------------------------------------------------------------------


def merge_main(argv: list[str]) -> int:
    """`merge`: fold an adapter (and a trained connector) into the base weights, for users who need plain weights."""
    p = argparse.ArgumentParser(prog="python -m mllm_safety.qlora_finetune merge", description=merge_adapter.__doc__)
    p.add_argument("--base", required=True, help="the base model (hub id or folder) the adapter was trained on")
    p.add_argument("--adapter", required=True, help="runs/<preset>/03_qlora_finetune/<mixture>/adapter")
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16")
    args = p.parse_args(argv)
    return run_cli(lambda: print(merge_adapter(args.base, args.adapter, args.out, getattr(torch, args.dtype))))


def main(argv: list[str] | None = None) -> int:
    """CLI: run stage 03 for a preset, or `merge` an adapter into its base."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["merge"]:
        return merge_main(argv[1:])
    return stage_main(TrainConfig, run, argv, "python -m mllm_safety.qlora_finetune", __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
