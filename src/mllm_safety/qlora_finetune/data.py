"""Stage 03's data: a stage-02 mixture encoded with the preset's prompt format, batched by modality and
length as the official trainer does, and the label preview notebook 03 shows."""

import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset, Sampler

from ..core.config import TrainConfig
from ..core.console import bar
from ..core.files import DataFormatError
from ..core.labels import Encoder, SampleSkipped, image_token_id, rules_differ, show_labels
from ..core.modeling import add_lora, full_finetune, load_processor
from ..core.records import load_llava_json
from ..core.vocabulary import record_images

log = logging.getLogger(__name__)


def mixture_path(cfg: TrainConfig, mix: str) -> Path:
    """Where stage 02 wrote the mixture."""
    return cfg.upstream("mix_rejection_data") / f"{mix}.json"


def encoder_for(cfg: TrainConfig, processor: Any) -> Encoder:
    """The label encoder of a training config."""
    return Encoder(
        processor,
        cfg.prompt_format,
        cfg.data_root,
        cfg.max_length,
        cfg.mask_eos_on_rejection,
        cfg.image_aspect_ratio,
        cfg.eos_rule,
        cfg.image_max_side,
    )


class ModalityLengthSampler(Sampler[int]):
    """Batches of one modality (image or text-only) and similar length, in a seeded random order per epoch.

    `step` (the official grouping, LLaVA's modality-length sampler): every optimizer step (`step_size` records:
    micro batch x accumulation x processes) holds one modality, its micro batches balanced by total length; the
    two modalities' last, partial steps go last, together, in index order. `micro_batch`: each micro batch holds one
    modality, grouped by length eight micro batches at a time, so one step may hold both (docs/deviations.md)."""

    def __init__(
        self,
        lengths: list[int],
        has_image: list[bool],
        batch: int,
        seed: int,
        grouping: str = "micro_batch",
        step_size: int = 0,
    ):
        self.lengths, self.has_image, self.batch, self.seed, self.epoch = lengths, has_image, batch, seed, 0
        self.grouping, self.step_size = grouping, step_size or batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        rng = random.Random(self.seed * 1000 + self.epoch)
        return iter(ORDERS[self.grouping](self, rng))


def modality_indices(sampler: ModalityLengthSampler, rng: random.Random) -> list[list[int]]:
    """The image records' and the text-only records' indices, each shuffled."""
    groups = []
    for modality in (True, False):
        idx = [i for i, m in enumerate(sampler.has_image) if m == modality]
        rng.shuffle(idx)
        groups.append(idx)
    return groups


def per_micro_batch_order(sampler: ModalityLengthSampler, rng: random.Random) -> list[int]:
    """Micro batches of one modality, sorted by length within groups of eight, in a shuffled order."""
    chunks, batch = [], sampler.batch
    for idx in modality_indices(sampler, rng):
        for group in [idx[k : k + batch * 8] for k in range(0, len(idx), batch * 8)]:
            group.sort(key=lambda i: -sampler.lengths[i])
            chunks += [group[k : k + batch] for k in range(0, len(group), batch)]
    rng.shuffle(chunks)
    return [i for chunk in chunks for i in chunk]


def balanced_micro_batches(step: list[int], lengths: list[int], batch: int) -> list[int]:
    """One step's records, longest first, dealt to its micro batches so that their total lengths stay close (each
    to the lightest batch that is not full); a step that does not divide evenly is dealt round-robin."""
    step = sorted(step, key=lambda i: -lengths[i])
    count = max(1, len(step) // batch)
    if len(step) % count:
        return [i for k in range(count) for i in step[k::count]]
    bins: list[list[int]] = [[] for _ in range(count)]
    totals, size = [0] * count, len(step) // count
    for i in step:
        k = min((k for k in range(count) if len(bins[k]) < size), key=lambda k: totals[k])
        bins[k].append(i)
        totals[k] += lengths[i]
    return [i for b in bins for i in b]


def per_step_order(sampler: ModalityLengthSampler, rng: random.Random) -> list[int]:
    """Steps of one modality in a shuffled order, then one last step of both modalities' leftovers."""
    size, steps, tail = sampler.step_size, [], []
    for idx in modality_indices(sampler, rng):
        if not idx:
            continue
        chunks = [
            balanced_micro_batches(idx[k : k + size], sampler.lengths, sampler.batch) for k in range(0, len(idx), size)
        ]
        steps += chunks[:-1]
        tail += chunks[-1]
    rng.shuffle(steps)
    return [i for step in steps for i in step] + sorted(tail)


ORDERS = {"step": per_step_order, "micro_batch": per_micro_batch_order}  # TrainConfig.modality_grouping -> order


class MixtureDataset(Dataset):
    """A stage-02 mixture, encoded on the fly; a first pass counts skipped and truncated samples."""

    def __init__(self, records: list[dict[str, Any]], encoder: Encoder):
        self.encoder, self.records, self.lengths, self.has_image = encoder, [], [], []
        self.counts: Counter[str] = Counter()
        for rec in bar(records, desc="encoding"):
            self.counts["eos_rules_differ"] += rules_differ(rec)  # records the other EOS rule would label otherwise
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
