"""Stage 03's records: the trained weights, each run's metrics (records kept, loss, throughput, memory, the
libraries' versions) and the stage's tables."""

import logging
import os
import resource
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer

from ..core.config import TrainConfig
from ..core.files import write_json
from ..core.modeling import compute_dtype
from .data import MixtureDataset

log = logging.getLogger(__name__)


# ---- save: the trained weights, the run's metrics, the stage's tables -----------------------------------------------


def save_trained(cfg: TrainConfig, model: Any, processor: Any, folder: Path) -> None:
    """The adapter (peft format), or with finetune full a whole model with its processor that loads like the base,
    its fp32 master weights saved in the compute dtype (bf16 on a GPU: half the disk; evaluation loads that dtype;
    under DeepSpeed the engine gathers and saves them as they are)."""
    if cfg.finetune == "full" and os.environ.get("ACCELERATE_USE_DEEPSPEED") != "true":
        model = model.to(compute_dtype())
    model.save_pretrained(folder)
    if cfg.finetune == "full":
        processor.save_pretrained(folder)


def peak_memory_mb() -> float:
    """Peak GPU memory (CUDA) or peak resident memory of this process (CPU), in MiB."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a training run."""
    import bitsandbytes
    import peft
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "bitsandbytes": bitsandbytes.__version__,
        "python": sys.version.split()[0],
    }


def run_identity(cfg: TrainConfig, mix: str) -> dict[str, Any]:
    """What a run trained: the stage, the mixture, the model and the settings that shape its labels."""
    return {
        "stage": cfg.stage,
        "preset": cfg.preset,
        "mixture": mix,
        "model": cfg.model_path,
        "finetune": cfg.finetune,
        "quantization": cfg.quantization,
        "prompt_format": cfg.prompt_format,
        "image_aspect_ratio": cfg.image_aspect_ratio,
        "mask_eos_on_rejection": cfg.mask_eos_on_rejection,
        "eos_rule": cfg.eos_rule,
    }


def run_metrics(
    cfg: TrainConfig,
    mix: str,
    trainer: Trainer,
    dataset: MixtureDataset,
    records: int,
    wall: float,
    resume: str | None,
    seen_before: int,
) -> dict[str, Any]:
    """A run's metrics over the WHOLE run, also after a resume: the mean loss of every logged step, and the
    throughput of this session alone (tokens seen since the resumed checkpoint)."""
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    seen = (trainer.state.num_input_tokens_seen or 0) - seen_before
    args = trainer.args
    return {
        **run_identity(cfg, mix),
        "mean_loss": float(sum(losses) / len(losses)) if losses else None,
        "last_logged_loss": losses[-1] if losses else None,
        "steps": trainer.state.global_step,
        "samples": len(dataset),
        "records": records,
        "processes": args.world_size,
        "effective_batch": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
        "resumed_from_step": int(resume.rsplit("-", 1)[1]) if resume else 0,
        "tokens_per_second": seen / wall if wall and seen > 0 else None,
        "peak_memory_mb": peak_memory_mb(),
        "wall_time_s": wall,
        **{k: int(v) for k, v in dataset.counts.items()},
        "versions": library_versions(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }


def write_metrics(cfg: TrainConfig, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Flat stage metrics: every mixture's numbers keyed by mixture."""
    flat: dict[str, Any] = {
        "stage": cfg.stage,
        "preset": cfg.preset,
        "model": cfg.model_path,
        "quantization": cfg.quantization,
        "prompt_format": cfg.prompt_format,
    }
    for mix, m in results.items():
        flat.update({f"{mix}/{k}": v for k, v in m.items() if isinstance(v, int | float) and not isinstance(v, bool)})
    write_json(cfg.stage_dir / "metrics.json", flat)
    return flat
