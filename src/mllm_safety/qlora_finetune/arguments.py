"""Stage 03's TrainingArguments, derived from the Trainer's own dataclass: the fields TrainConfig names
otherwise, the ones it must not pass, and the values this project fixes; checked when the module is imported."""

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import torch
from transformers import SchedulerType, TrainingArguments

from ..core.config import TrainConfig
from ..core.files import DataFormatError

log = logging.getLogger(__name__)


# TrainConfig fields that TrainingArguments names otherwise; every other TrainConfig field with the name of a
# TrainingArguments field goes there under that name (learning_rate, weight_decay, max_steps, save_steps, ...).
RENAMED = {
    "num_epochs": "num_train_epochs",
    "micro_batch_size": "per_device_train_batch_size",
    "lr_scheduler": "lr_scheduler_type",
    "warmup_ratio": "warmup_steps",  # below 1 it is a share of the training steps (1.0 would be one step)
}
# TrainConfig fields that TrainingArguments also has but must not get: core.modeling applies them to the model.
NOT_PASSED = ("gradient_checkpointing",)


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# Checkpoints kept by what is trained. LoRA: the newest to resume from and the one before (a checkpoint is small:
# the adapter and its AdamW state, ~4 GB at r 128 on a 7B model). Full fine-tuning: the newest only, since one
# holds fp32 weights and AdamW's moments (12 bytes a trained parameter: ~85 GB for a 7B model); the Trainer writes the
# new one before it deletes the old, so the disk needs room for two while it saves (docs/training.md).
CHECKPOINTS_KEPT = {"lora": 2, "full": 1}

# What this project sets whatever the config: a value, or a function of (config, run folder, processes).
FIXED: dict[str, Any] = {
    "output_dir": lambda cfg, out, world: str(out / "checkpoints"),
    "gradient_accumulation_steps": lambda cfg, out, world: accumulation_steps(cfg, world),
    "data_seed": lambda cfg, out, world: cfg.seed,
    "bf16": lambda *_: torch.cuda.is_available() and torch.cuda.is_bf16_supported(),  # else fp32, never fp16
    "use_cpu": lambda *_: not torch.cuda.is_available(),
    "report_to": lambda *_: "tensorboard" if _installed("tensorboard") else "none",
    "save_strategy": "steps",
    "save_total_limit": lambda cfg, out, world: CHECKPOINTS_KEPT[cfg.finetune],
    "remove_unused_columns": False,  # the samples reach the collator whole
    "dataloader_num_workers": 0,
    "include_num_input_tokens_seen": "non_padding",
}


def config_to_trainer(config_fields: list[str], trainer_fields: set[str]) -> dict[str, str]:
    """{TrainConfig field: TrainingArguments field} from the tables above; a table name that either dataclass lacks,
    or a field set both by the config and by FIXED, is an error (a transformers upgrade that renames one fails here)."""
    passed = [c for c in config_fields if (c in RENAMED or c in trainer_fields) and c not in NOT_PASSED]
    mapping = {c: RENAMED.get(c, c) for c in passed}
    named = [*RENAMED.values(), *NOT_PASSED, *FIXED]
    problems = [f"TrainingArguments has no field {t!r}" for t in named if t not in trainer_fields]
    problems += [f"TrainConfig has no field {c!r}" for c in [*RENAMED, *NOT_PASSED] if c not in config_fields]
    problems += [f"{t!r} is set by both TrainConfig and FIXED" for t in mapping.values() if t in FIXED]
    if problems:
        raise TypeError("qlora_finetune's TrainingArguments table: " + "; ".join(problems))
    return mapping


CONFIG_TO_TRAINER = config_to_trainer(
    [f.name for f in dataclasses.fields(TrainConfig)], {f.name for f in dataclasses.fields(TrainingArguments)}
)


def check_config(cfg: TrainConfig) -> None:
    """What TrainConfig cannot check without transformers, checked before any model loads: the scheduler's name."""
    allowed = [s.value for s in SchedulerType]
    if cfg.lr_scheduler not in allowed:
        raise DataFormatError(f"lr_scheduler {cfg.lr_scheduler!r} is not one of {', '.join(allowed)}")


def processes() -> int:
    """How many processes train together: the launcher's WORLD_SIZE (torchrun, accelerate launch), else 1.
    Read before anything initialises torch.distributed, so that the accumulation is right from the start."""
    return max(int(os.environ.get("WORLD_SIZE", "1")), 1)


def is_main_process() -> bool:
    """True on the process that writes the run's files (rank 0, or the only process)."""
    return int(os.environ.get("RANK", "0")) == 0


def accumulation_steps(cfg: TrainConfig, world: int) -> int:
    """Gradient accumulation so that micro batch x accumulation x processes = global_batch_size, exactly."""
    per_step = cfg.micro_batch_size * world
    if cfg.global_batch_size % per_step:
        raise DataFormatError(
            f"global_batch_size {cfg.global_batch_size} is not a multiple of micro_batch_size {cfg.micro_batch_size} "
            f"x {world} process(es). Fix: choose sizes whose product divides the global batch"
        )
    return cfg.global_batch_size // per_step


def training_arguments(cfg: TrainConfig, out_dir: Path) -> TrainingArguments:
    """TrainingArguments from the config (CONFIG_TO_TRAINER) and FIXED; gradient accumulation reaches the global
    batch size on every launcher."""
    world = processes()
    values = {t: getattr(cfg, c) for c, t in CONFIG_TO_TRAINER.items()}
    values |= {k: v(cfg, out_dir, world) if callable(v) else v for k, v in FIXED.items()}
    args = TrainingArguments(**values)
    effective = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    if effective != cfg.global_batch_size:
        raise RuntimeError(
            f"effective batch {effective} != global_batch_size {cfg.global_batch_size} "
            f"(processes: launcher {world}, trainer {args.world_size})"
        )
    return args
