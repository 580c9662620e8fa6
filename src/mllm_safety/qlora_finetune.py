"""Stage 03, QLoRA fine-tuning: post-hoc LoRA on an image-text-to-text model, one adapter per stage-02 mixture.

Defaults are the paper's LLaVA-1.5 recipe (REFERENCE.md §1.3, settings: `core.config.TrainConfig`); NF4
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
import os
import random
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler
from transformers import PrinterCallback, SchedulerType, Trainer, TrainerCallback, TrainingArguments, set_seed

from .core.cli import run_cli, stage_main
from .core.config import TrainConfig
from .core.console import bar, inner_bars_enabled
from .core.files import DataFormatError, write_json, write_text
from .core.labels import Collator, Encoder, SampleSkipped, image_token_id, show_labels
from .core.modeling import add_lora, find_parts, full_finetune, load_model, load_processor, merge_adapter
from .core.names import display_label
from .core.records import load_llava_json
from .core.results import StageResult
from .core.runs import TRAINED, is_finished, start_run
from .core.vocabulary import record_images

log = logging.getLogger(__name__)


# ---- config: TrainConfig -> TrainingArguments -----------------------------------------------------------------------

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


# What this project sets whatever the config: a value, or a function of (config, run folder, processes).
FIXED: dict[str, Any] = {
    "output_dir": lambda cfg, out, world: str(out / "checkpoints"),
    "gradient_accumulation_steps": lambda cfg, out, world: accumulation_steps(cfg, world),
    "data_seed": lambda cfg, out, world: cfg.seed,
    "bf16": lambda *_: torch.cuda.is_available() and torch.cuda.is_bf16_supported(),  # else fp32, never fp16
    "use_cpu": lambda *_: not torch.cuda.is_available(),
    "report_to": lambda *_: "tensorboard" if _installed("tensorboard") else "none",
    "save_strategy": "steps",
    "save_total_limit": 2,  # the newest checkpoint to resume from, and the one before in case it is incomplete
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


# ---- load: the mixture, encoded; the model, made trainable ----------------------------------------------------------


def mixture_path(cfg: TrainConfig, mix: str) -> Path:
    """Where stage 02 wrote the mixture."""
    return cfg.upstream("mix_rejection_data") / f"{mix}.json"


def encoder_for(cfg: TrainConfig, processor: Any) -> Encoder:
    """The label encoder of a training config."""
    return Encoder(
        processor, cfg.prompt_format, cfg.data_root, cfg.max_length, cfg.mask_eos_on_rejection, cfg.image_aspect_ratio
    )


class ModalityLengthSampler(Sampler[int]):
    """Batches of one modality (image or text-only) and similar length, in a seeded random order per epoch."""

    def __init__(self, lengths: list[int], has_image: list[bool], batch: int, seed: int):
        self.lengths, self.has_image, self.batch, self.seed, self.epoch = lengths, has_image, batch, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        rng = random.Random(self.seed * 1000 + self.epoch)
        chunks = []
        for modality in (True, False):
            idx = [i for i, m in enumerate(self.has_image) if m == modality]
            rng.shuffle(idx)
            mega = [idx[k : k + self.batch * 8] for k in range(0, len(idx), self.batch * 8)]
            for group in mega:
                group.sort(key=lambda i: -self.lengths[i])
                chunks += [group[k : k + self.batch] for k in range(0, len(group), self.batch)]
        rng.shuffle(chunks)
        return iter([i for chunk in chunks for i in chunk])


class MixtureDataset(Dataset):
    """A stage-02 mixture, encoded on the fly; a first pass counts skipped and truncated samples."""

    def __init__(self, records: list[dict[str, Any]], encoder: Encoder):
        self.encoder, self.records, self.lengths, self.has_image = encoder, [], [], []
        self.counts: Counter[str] = Counter()
        for rec in bar(records, desc="encoding"):
            try:
                sample = encoder.encode(rec)
            except SampleSkipped as skip:
                self.counts[f"skipped_{skip.reason}"] += 1
                continue
            self.counts["truncated"] += bool(sample.get("truncated"))
            self.counts["trained_tokens"] += int((sample["labels"] != -100).sum())
            self.records.append(rec)
            self.lengths.append(len(sample["input_ids"]))
            self.has_image.append(bool(record_images(rec)))

    def check_skips(self, path: Path, limit: float) -> None:
        """Fail when more than `limit` of the mixture's records could not be trained on, naming reasons and counts."""
        skipped = {k.removeprefix("skipped_"): v for k, v in self.counts.items() if k.startswith("skipped_")}
        total = len(self.records) + sum(skipped.values())
        if total and sum(skipped.values()) / total > limit:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items()))
            raise DataFormatError(
                f"{path}: {sum(skipped.values())} of {total} records cannot be trained on ({reasons}), more than "
                f"max_skipped_share {limit:.0%}. Fix: check prompt_format and max_length against the data"
            )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self.encoder.encode(self.records[i])
        sample.pop("truncated", None)
        return sample


def load_mixture(cfg: TrainConfig, mix: str, processor: Any) -> tuple[MixtureDataset, int]:
    """A mixture's trainable samples and its record count; too many skipped records fail the run."""
    records = load_llava_json(mixture_path(cfg, mix), allow_duplicate_ids=True)
    dataset = MixtureDataset(records, encoder_for(cfg, processor))
    dataset.check_skips(mixture_path(cfg, mix), cfg.max_skipped_share)
    return dataset, len(records)


def make_trainable(cfg: TrainConfig, model: Any) -> Any:
    """The model with what cfg.finetune trains: a LoRA adapter (and the connector), or the weights themselves."""
    if cfg.finetune == "full":
        return full_finetune(model, cfg.train_projector, cfg.gradient_checkpointing)
    return add_lora(
        model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.train_projector, cfg.gradient_checkpointing
    )


def label_preview(cfg: TrainConfig, mix: str) -> dict[str, str]:
    """The labels of the mixture's first rejection, normal and multi-turn records (those it has), decoded with
    the model's tokenizer; masked tokens inside ⟦ ⟧."""
    processor = load_processor(cfg.model_path, cfg.trust_remote_code)
    encoder = encoder_for(cfg, processor)
    records = load_llava_json(mixture_path(cfg, mix), allow_duplicate_ids=True)
    wanted = {
        "rejection": lambda r: r.get("rejection"),
        "normal": lambda r: not r.get("rejection"),
        "multi-turn": lambda r: len(r["conversations"]) > 2,
    }
    picks = {kind: rec for kind, test in wanted.items() if (rec := next((r for r in records if test(r)), None))}
    out = {}
    for kind, rec in picks.items():
        s = encoder.encode(rec)
        out[kind] = show_labels(s["input_ids"], s["labels"], processor.tokenizer, image_token_id(processor))
    return out


# ---- do: train ------------------------------------------------------------------------------------------------------


class SafetyTrainer(Trainer):
    """The HF Trainer with the connector on its own learning rate and modality-grouped batches."""

    def __init__(
        self,
        *args: Any,
        connector_names: tuple[str, ...] = (),
        projector_lr: float | None = None,
        sampler: Sampler | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.connector_names, self.projector_lr, self.sampler = connector_names, projector_lr, sampler

    def _get_train_sampler(self, train_dataset=None):
        return self.sampler or super()._get_train_sampler(train_dataset)

    def create_optimizer(self, model=None):
        if self.optimizer is None and self.projector_lr is not None:
            opt_model = self.model if model is None else model
            trainable = [(n, p) for n, p in opt_model.named_parameters() if p.requires_grad]
            is_conn = lambda n: any(c.split(".")[-1] + "." in n for c in self.connector_names)  # noqa: E731
            groups = [
                {"params": [p for n, p in trainable if not is_conn(n)]},
                {"params": [p for n, p in trainable if is_conn(n)], "lr": self.projector_lr},
            ]
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = cls([g for g in groups if g["params"]], weight_decay=self.args.weight_decay, **kwargs)
        return super().create_optimizer(model)


def make_trainer(
    cfg: TrainConfig,
    model: Any,
    pad_id: int,
    connectors: tuple[str, ...],
    dataset: MixtureDataset,
    args: TrainingArguments,
    callbacks: list[TrainerCallback] | None,
    quiet: bool,
) -> SafetyTrainer:
    """The Trainer of one run: the connector on projector_lr, modality-grouped batches, quiet if asked."""
    quiet = quiet or not inner_bars_enabled()
    args.disable_tqdm = args.disable_tqdm or quiet
    sampler = ModalityLengthSampler(dataset.lengths, dataset.has_image, cfg.micro_batch_size, cfg.seed)
    trainer = SafetyTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=Collator(pad_id),
        connector_names=connectors,
        projector_lr=cfg.projector_lr if cfg.train_projector else None,
        sampler=sampler if cfg.group_by_modality_length else None,
        callbacks=callbacks,
    )
    if quiet:
        trainer.remove_callback(PrinterCallback)
    return trainer


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint that was saved to the end (trainer_state.json written last); a run killed while saving
    resumes from the one before."""
    steps = sorted(
        folder.glob("checkpoint-*"),
        key=lambda p: int(p.name.rsplit("-", 1)[1]) if p.name.rsplit("-", 1)[1].isdigit() else -1,
    )
    complete = [p for p in steps if (p / "trainer_state.json").is_file()]
    if len(complete) < len(steps):
        log.warning("%s: skipping %d incomplete checkpoint(s)", folder, len(steps) - len(complete))
    return str(complete[-1]) if complete else None


def tokens_seen(checkpoint: str | None) -> int:
    """The input tokens a checkpoint had seen (0 without one)."""
    if not checkpoint:
        return 0
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    return int(state.get("num_input_tokens_seen") or 0)


def train_from_last_checkpoint(trainer: Trainer) -> tuple[str | None, int, float]:
    """Train, resumed from the last complete checkpoint: that checkpoint, the tokens it had seen, the wall time."""
    resume = last_complete_checkpoint(Path(trainer.args.output_dir))
    seen_before = tokens_seen(resume)  # read now: checkpoint rotation may delete it during training
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    return resume, seen_before, time.perf_counter() - start


def train_mixture(
    cfg: TrainConfig,
    mix: str,
    callbacks: list[TrainerCallback] | None = None,
    quiet: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fine-tune on one mixture; resumes from the last checkpoint; a finished run is reused, never overwritten.
    quiet: no per-step bar or log lines (the studies run dozens of these under their own progress bar)."""
    check_config(cfg)
    out = cfg.stage_dir / mix
    run_cfg = {**{k: v for k, v in cfg.to_dict().items() if k != "train_mixes"}, "mixture": mix}
    folder, marker = TRAINED[cfg.finetune]
    if is_finished(out, run_cfg) and (out / folder / marker).is_file():
        log.info("%s is finished with this config; reusing it", out)
        return json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    if is_main_process():
        start_run(out, run_cfg, overwrite)
    set_seed(cfg.seed)
    model, processor = load_model(cfg.model_path, cfg.quantization, cfg.trust_remote_code)
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


def run(cfg: TrainConfig, overwrite: bool = False) -> TrainResult:
    """Train one adapter per mixture in cfg.train_mixes (each mixture's folder guards its own run)."""
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


# ---- save: the trained weights, the run's metrics, the stage's tables -----------------------------------------------


def save_trained(cfg: TrainConfig, model: Any, processor: Any, folder: Path) -> None:
    """The adapter (peft format), or with finetune full a whole model with its processor that loads like the base."""
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
        "final_loss": float(sum(losses) / len(losses)) if losses else None,
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


COST_COLUMNS = [
    "records",
    "samples",
    "final_loss",
    "steps",
    "trained_tokens",
    "tokens_per_second",
    "peak_memory_mb",
    "wall_time_s",
]


def results_table(res: TrainResult) -> pd.DataFrame:
    """One row per trained mixture (short labels): records, samples kept, loss, steps, throughput, memory, time."""
    table = pd.DataFrame(res.runs).T.reindex(columns=COST_COLUMNS).astype(float).round(3)
    table.index = [display_label(m) for m in table.index]
    return table.rename_axis("mixture")


def what_we_saw(res: TrainResult) -> str:
    """How the runs went, from their metrics: records kept, loss, cost."""
    lines = []
    for mix, m in res.runs.items():
        skipped = sum(v for k, v in m.items() if k.startswith("skipped_"))
        lines.append(
            f"- `{display_label(mix)}`: {m['samples']} of {m['records']} records trained ({skipped} skipped), "
            f"{m['steps']} optimizer steps, final loss {m['final_loss']:.3f}, {m['wall_time_s']:.0f} s."
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
