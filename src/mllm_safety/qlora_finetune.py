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
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments, set_seed

from .core.cli import run_cli, stage_main
from .core.config import TrainConfig, stage_dir
from .core.console import bar, inner_bars_enabled
from .core.files import DataFormatError, write_json, write_text
from .core.labels import Collator, Encoder, SampleSkipped, image_token_id, show_labels
from .core.modeling import add_lora, find_parts, full_finetune, load_model, load_processor, merge_adapter
from .core.records import load_llava_json
from .core.runs import TRAINED, is_finished, start_run
from .core.tables import display_label
from .core.vocabulary import record_images

log = logging.getLogger(__name__)


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
    """TrainingArguments from the config; gradient accumulation reaches the global batch size on every launcher."""
    world = processes()
    tensorboard = "tensorboard" if _installed("tensorboard") else "none"
    args = TrainingArguments(
        output_dir=str(out_dir / "checkpoints"),
        per_device_train_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=accumulation_steps(cfg, world),
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False,
        dataloader_num_workers=0,
        report_to=tensorboard,
        include_num_input_tokens_seen="non_padding",
    )
    effective = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    if effective != cfg.global_batch_size:
        raise RuntimeError(
            f"effective batch {effective} != global_batch_size {cfg.global_batch_size} "
            f"(processes: launcher {world}, trainer {args.world_size})"
        )
    return args


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


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


def train_mixture(
    cfg: TrainConfig,
    mix: str,
    callbacks: list[TrainerCallback] | None = None,
    quiet: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fine-tune on one mixture; resumes from the last checkpoint; a finished run is reused, never overwritten.
    quiet: no per-step bar or log lines (the studies run dozens of these under their own progress bar)."""
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
    records = load_llava_json(mixture_path(cfg, mix), allow_duplicate_ids=True)
    dataset = MixtureDataset(records, encoder_for(cfg, processor))
    dataset.check_skips(mixture_path(cfg, mix), cfg.max_skipped_share)
    if cfg.finetune == "full":
        model = full_finetune(model, cfg.train_projector, cfg.gradient_checkpointing)
    else:
        model = add_lora(
            model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.train_projector, cfg.gradient_checkpointing
        )
    args = training_arguments(cfg, out)
    quiet = quiet or not inner_bars_enabled()
    args.disable_tqdm = args.disable_tqdm or quiet
    sampler = ModalityLengthSampler(dataset.lengths, dataset.has_image, cfg.micro_batch_size, cfg.seed)
    trainer = SafetyTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=Collator(processor.tokenizer.pad_token_id),
        connector_names=parts.connectors,
        projector_lr=cfg.projector_lr if cfg.train_projector else None,
        sampler=sampler if cfg.group_by_modality_length else None,
        callbacks=callbacks,
    )
    if quiet:
        trainer.remove_callback(PrinterCallback)
    resume = last_complete_checkpoint(Path(args.output_dir))
    seen_before = tokens_seen(resume)  # read now: checkpoint rotation may delete it during training
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    wall = time.perf_counter() - start
    if not trainer.is_world_process_zero():
        return {}
    model.save_pretrained(out / folder)
    if cfg.finetune == "full":  # a whole model: it loads on its own, like the base
        processor.save_pretrained(out / folder)
    history = trainer.state.log_history
    write_text(out / "log_history.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    metrics = run_metrics(cfg, mix, trainer, dataset, len(records), wall, resume, seen_before)
    write_json(out / "metrics.json", metrics)
    return metrics


def encoder_for(cfg: TrainConfig, processor: Any) -> Encoder:
    """The label encoder of a training config."""
    return Encoder(
        processor, cfg.prompt_format, cfg.data_root, cfg.max_length, cfg.mask_eos_on_rejection, cfg.image_aspect_ratio
    )


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
    resumed_step = int(resume.rsplit("-", 1)[1]) if resume else 0
    seen = (trainer.state.num_input_tokens_seen or 0) - seen_before
    args = trainer.args
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
        "final_loss": float(sum(losses) / len(losses)) if losses else None,
        "last_logged_loss": losses[-1] if losses else None,
        "steps": trainer.state.global_step,
        "samples": len(dataset),
        "records": records,
        "processes": args.world_size,
        "effective_batch": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
        "resumed_from_step": resumed_step,
        "tokens_per_second": seen / wall if wall and seen > 0 else None,
        "peak_memory_mb": peak_memory_mb(),
        "wall_time_s": wall,
        **{k: int(v) for k, v in dataset.counts.items()},
        "versions": library_versions(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }


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


def results_table(results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per trained mixture (short labels): records, samples kept, loss, steps, throughput, memory, time."""
    table = pd.DataFrame(results).T.reindex(columns=COST_COLUMNS).astype(float).round(3)
    table.index = [display_label(m) for m in table.index]
    return table.rename_axis("mixture")


def what_we_saw(results: dict[str, dict[str, Any]]) -> str:
    """How the runs went, from their metrics: records kept, loss, cost."""
    lines = []
    for mix, m in results.items():
        skipped = sum(v for k, v in m.items() if k.startswith("skipped_"))
        lines.append(
            f"- `{display_label(mix)}`: {m['samples']} of {m['records']} records trained ({skipped} skipped), "
            f"{m['steps']} optimizer steps, final loss {m['final_loss']:.3f}, {m['wall_time_s']:.0f} s."
        )
    return "\n".join(lines)


def mixture_path(cfg: TrainConfig, mix: str) -> Path:
    """Where stage 02 wrote the mixture."""
    return stage_dir(cfg.runs_root, cfg.preset, "mix_rejection_data") / f"{mix}.json"


def run(cfg: TrainConfig, overwrite: bool = False) -> dict[str, dict[str, Any]]:
    """Train one adapter per mixture in cfg.train_mixes (each mixture's folder guards its own run)."""
    if not cfg.train_mixes:
        raise DataFormatError("train_mixes is empty. Fix: name at least one mixture written by stage 02")
    missing = [str(mixture_path(cfg, m)) for m in cfg.train_mixes if not mixture_path(cfg, m).is_file()]
    if missing:
        raise FileNotFoundError(f"no such mixture: {', '.join(missing)}. Fix: run stage 02, or check train_mixes")
    if is_main_process():
        write_json(cfg.stage_dir / "config.json", cfg.to_dict())
    results = {mix: train_mixture(cfg, mix, overwrite=overwrite) for mix in cfg.train_mixes}
    if is_main_process():
        write_metrics(cfg, results)
    return results


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
