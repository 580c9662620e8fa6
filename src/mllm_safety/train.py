"""Stage 03: post-hoc (Q)LoRA fine-tuning of an image-text-to-text model on a mixture from stage 02.

Defaults are the paper's LLaVA-1.5 recipe (REFERENCE.md §1.3); NF4 quantization lets it run on one GPU.
CLI: `python -m mllm_safety.train --preset toy`; several GPUs: `accelerate launch -m mllm_safety.train ...`.
Every run lives in runs/<preset>/03_finetune/<mixture>/: adapter/ (standard peft format, the connector
included when trained), checkpoints/ (resumable), config.json, log_history.jsonl, metrics.json.
"""

from __future__ import annotations

import json
import logging
import random
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler
from tqdm.auto import tqdm
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from .collate import Collator, Encoder, SampleSkipped, show_labels
from .config import prepare_run_dir, stage_main, to_dict
from .data import load_llava_json, record_images
from .files import write_json, write_text
from .modeling import add_lora, find_parts, load_model

log = logging.getLogger(__name__)
STAGE = "03_finetune"


@dataclass(frozen=True)
class TrainConfig:
    """Stage 03's settings; defaults are the paper's recipe; field names equal the notebook's parameters."""

    preset: str = "toy"
    runs_root: str = "runs"
    data_root: str = "data/toy"  # images in the mixtures are relative to it
    model_path: str = "llava-hf/llava-1.5-7b-hf"  # hub id or local folder
    train_mixes: list[str] = field(default_factory=list)  # mixture names from stage 02 (one adapter each)
    quantization: str = "nf4"  # nf4, int8 or none
    trust_remote_code: bool = False
    prompt_format: str = "vicuna_v1"  # vicuna_v1, llava_v1 or chat_template
    mask_eos_on_rejection: bool = True
    max_length: int = 2048
    lora_r: int = 128
    lora_alpha: int = 256
    lora_dropout: float = 0.05
    train_projector: bool = True  # the paper's LLaVA-1.5 recipe; False = their LLaMA-Factory recipe
    learning_rate: float = 2e-4
    projector_lr: float = 2e-5
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    num_epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides num_epochs
    global_batch_size: int = 128  # micro batch x gradient accumulation x GPUs
    micro_batch_size: int = 16
    gradient_checkpointing: bool = True
    group_by_modality_length: bool = True
    save_steps: int = 50
    logging_steps: int = 1
    seed: int = 0

    @property
    def stage_dir(self) -> Path:
        return Path(self.runs_root) / self.preset / STAGE


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
        for rec in tqdm(records, desc="encoding", leave=False):
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

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self.encoder.encode(self.records[i])
        sample.pop("truncated", None)
        return sample


class SafetyTrainer(Trainer):
    """The HF Trainer with the connector on its own learning rate and modality-grouped batches."""

    def __init__(self, *args: Any, connector_names: tuple[str, ...] = (), projector_lr: float | None = None,
                 sampler: Sampler | None = None, **kwargs: Any):  # fmt: skip
        super().__init__(*args, **kwargs)
        self.connector_names, self.projector_lr, self.sampler = connector_names, projector_lr, sampler

    def _get_train_sampler(self, train_dataset=None):
        return self.sampler or super()._get_train_sampler(train_dataset)

    def create_optimizer(self, model=None):
        if self.optimizer is None and self.projector_lr is not None:
            opt_model = self.model if model is None else model
            trainable = [(n, p) for n, p in opt_model.named_parameters() if p.requires_grad]
            is_conn = lambda n: any(c.split(".")[-1] + "." in n for c in self.connector_names)  # noqa: E731
            groups = [{"params": [p for n, p in trainable if not is_conn(n)]},
                      {"params": [p for n, p in trainable if is_conn(n)], "lr": self.projector_lr}]  # fmt: skip
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = cls([g for g in groups if g["params"]], weight_decay=self.args.weight_decay, **kwargs)
        return super().create_optimizer(model)


def training_arguments(cfg: TrainConfig, out_dir: Path) -> TrainingArguments:
    """TrainingArguments from the config; gradient accumulation reaches the global batch size."""
    world = max(torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1, 1)
    accumulation = max(1, cfg.global_batch_size // (cfg.micro_batch_size * world))
    tensorboard = "tensorboard" if _installed("tensorboard") else "none"
    return TrainingArguments(
        output_dir=str(out_dir / "checkpoints"), per_device_train_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=accumulation, num_train_epochs=cfg.num_epochs, max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay, logging_steps=cfg.logging_steps, save_strategy="steps",
        save_steps=cfg.save_steps, save_total_limit=2, seed=cfg.seed, data_seed=cfg.seed,
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(), use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False, dataloader_num_workers=0, report_to=tensorboard,
        include_num_input_tokens_seen="non_padding",
    )  # fmt: skip


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

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "bitsandbytes": bitsandbytes.__version__, "python": sys.version.split()[0]}  # fmt: skip


def train_mixture(
    cfg: TrainConfig, mix: str, callbacks: list[TrainerCallback] | None = None, quiet: bool = False
) -> dict[str, Any]:
    """Fine-tune on one mixture; resumes from the last checkpoint; a finished run is reused, never overwritten.
    quiet: no per-step bar or log lines (the studies run dozens of these under their own progress bar)."""
    out = cfg.stage_dir / mix
    run_cfg = {**{k: v for k, v in to_dict(cfg).items() if k != "train_mixes"}, "mixture": mix}
    prepare_run_dir(out, run_cfg)
    if (out / "adapter" / "adapter_config.json").is_file() and (out / "metrics.json").is_file():
        log.info("%s is finished with this config; reusing it", out)
        return json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    set_seed(cfg.seed)
    model, processor = load_model(cfg.model_path, cfg.quantization, cfg.trust_remote_code)
    parts = find_parts(model)
    encoder = Encoder(processor, cfg.prompt_format, cfg.data_root, cfg.max_length, cfg.mask_eos_on_rejection)
    records = load_llava_json(mixture_path(cfg, mix), allow_duplicate_ids=True)
    dataset = MixtureDataset(records, encoder)
    model = add_lora(
        model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.train_projector, cfg.gradient_checkpointing
    )
    args = training_arguments(cfg, out)
    args.disable_tqdm = args.disable_tqdm or quiet
    sampler = ModalityLengthSampler(dataset.lengths, dataset.has_image, cfg.micro_batch_size, cfg.seed)
    trainer = SafetyTrainer(
        model=model, args=args, train_dataset=dataset, data_collator=Collator(processor.tokenizer.pad_token_id),
        connector_names=parts.connectors, projector_lr=cfg.projector_lr if cfg.train_projector else None,
        sampler=sampler if cfg.group_by_modality_length else None,
        callbacks=callbacks,
    )  # fmt: skip
    if quiet:
        trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    resume = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    result = trainer.train(resume_from_checkpoint=resume)
    wall = time.perf_counter() - start
    model.save_pretrained(out / "adapter")
    write_text(out / "log_history.jsonl", "".join(json.dumps(r) + "\n" for r in trainer.state.log_history))
    seen = trainer.state.num_input_tokens_seen or sum(dataset.lengths) * args.num_train_epochs
    metrics = {
        "stage": STAGE, "preset": cfg.preset, "mixture": mix, "model": cfg.model_path,
        "quantization": cfg.quantization, "prompt_format": cfg.prompt_format,
        "mask_eos_on_rejection": cfg.mask_eos_on_rejection, "final_loss": result.training_loss,
        "steps": trainer.state.global_step, "samples": len(dataset), "records": len(records),
        "resumed_from_step": int(resume.rsplit("-", 1)[1]) if resume else 0,
        "tokens_per_second": seen / wall if wall else None, "peak_memory_mb": peak_memory_mb(), "wall_time_s": wall,
        **{k: int(v) for k, v in dataset.counts.items()}, "versions": library_versions(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }  # fmt: skip
    write_json(out / "metrics.json", metrics)
    return metrics


def label_preview(cfg: TrainConfig, mix: str) -> dict[str, str]:
    """The labels of the mixture's first rejection record and first normal record, decoded (masked in ⟦ ⟧)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(cfg.model_path, trust_remote_code=cfg.trust_remote_code)
    encoder = Encoder(processor, cfg.prompt_format, cfg.data_root, cfg.max_length, cfg.mask_eos_on_rejection)
    records = load_llava_json(mixture_path(cfg, mix), allow_duplicate_ids=True)
    picks = {"rejection": next(r for r in records if r.get("rejection")),
             "normal": next(r for r in records if not r.get("rejection"))}  # fmt: skip
    out = {}
    for kind, rec in picks.items():
        s = encoder.encode(rec)
        out[kind] = show_labels(s["input_ids"], s["labels"], processor.tokenizer, processor.image_token_id)
    return out


def mixture_path(cfg: TrainConfig, mix: str) -> Path:
    """Where stage 02 wrote the mixture."""
    return Path(cfg.runs_root) / cfg.preset / "02_mix" / f"{mix}.json"


def run(cfg: TrainConfig) -> dict[str, dict[str, Any]]:
    """Train one adapter per mixture in cfg.train_mixes."""
    if not cfg.train_mixes:
        raise ValueError("train_mixes is empty: name at least one mixture written by stage 02")
    write_json(cfg.stage_dir / "config.json", to_dict(cfg))  # each mixture's folder guards its own run
    return {mix: train_mixture(cfg, mix) for mix in cfg.train_mixes}


def write_metrics(cfg: TrainConfig, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Flat stage metrics: every mixture's numbers keyed by mixture."""
    flat: dict[str, Any] = {"stage": STAGE, "preset": cfg.preset, "model": cfg.model_path,
                            "quantization": cfg.quantization, "prompt_format": cfg.prompt_format}  # fmt: skip
    for mix, m in results.items():
        flat.update({f"{mix}/{k}": v for k, v in m.items() if isinstance(v, int | float) and not isinstance(v, bool)})
    write_json(cfg.stage_dir / "metrics.json", flat)
    return flat


def main(argv: list[str] | None = None) -> int:
    """CLI: run stage 03 for a preset."""
    return stage_main(TrainConfig, run, write_metrics, argv, "python -m mllm_safety.train", __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
