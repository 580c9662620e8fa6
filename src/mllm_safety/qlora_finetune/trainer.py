"""Stage 03's trainer: the Trainer with the connector's own learning rate and the modality-length sampler,
resumed from the last complete checkpoint. In a notebook the Trainer's own output (its HTML table of the loss
at every step) is replaced by one plain progress line; the losses go to the run folder's log_history.jsonl and
the notebook draws them."""

import json
import logging
import time
from pathlib import Path
from typing import Any

from torch.utils.data import Sampler
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from ..core.config import TrainConfig
from ..core.console import bar, in_notebook, inner_bars_enabled
from ..core.labels import Collator
from ..core.names import display_label
from .data import MixtureDataset, ModalityLengthSampler

log = logging.getLogger(__name__)


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


class StepLine(TrainerCallback):
    """Optimizer steps on one progress line (core.console.bar), in place of the Trainer's per-step log."""

    def __init__(self, desc: str):
        self.desc, self.bar = desc, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = bar(total=state.max_steps, initial=state.global_step, desc=self.desc, unit="step")

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()


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
    """The Trainer of one run: the connector on projector_lr, modality-grouped batches, quiet if asked; in a
    notebook, one progress line instead of the Trainer's bar and log table."""
    quiet = quiet or not inner_bars_enabled()
    notebook = in_notebook()
    args.disable_tqdm = args.disable_tqdm or quiet or notebook
    sampler = ModalityLengthSampler(
        dataset.lengths, dataset.has_image, cfg.micro_batch_size, cfg.seed, cfg.modality_grouping, cfg.global_batch_size
    )
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
    if quiet or notebook:
        trainer.remove_callback(PrinterCallback)
    if notebook and not quiet:
        trainer.add_callback(StepLine(f"train {display_label(Path(args.output_dir).parent.name)}"))
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
