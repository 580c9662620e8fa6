"""What a stage-04 run is made from: the models it evaluates (base, adapters) and the fingerprints of their weights,
of every benchmark's items and of the judge models. Generations files carry the weights' fingerprints and each
item's; the stage's inputs.json holds them all, so that a finished evaluation is reused only when none changed."""

from __future__ import annotations

from pathlib import Path

from ..core.benchmarks import EvalItem
from ..core.config import EvalConfig
from ..core.fingerprints import fingerprint, source_fingerprint, value_digest
from ..core.generation import item_fingerprints
from ..core.judges import JUDGING
from ..core.runs import TRAINED, trained_weights

Model = tuple[str, str | None]  # (name of its folder under 04_evaluate/, the stage-03 mixture of its adapter)


def adapter_path(cfg: EvalConfig, adapter: str) -> Path:
    """Where stage 03 saved what it trained on a mixture: the adapter, or the whole model (full fine-tuning)."""
    run = cfg.upstream("qlora_finetune") / adapter
    return trained_weights(run) or run / "adapter"


def models(cfg: EvalConfig) -> list[Model]:
    """The models the config evaluates: the base (when eval_base), then one per adapter."""
    return [*([("base", None)] if cfg.eval_base else []), *[(a, a) for a in cfg.eval_adapters]]


def model_inputs(cfg: EvalConfig, adapter: str | None) -> dict[str, str]:
    """Fingerprints of the weights a model's answers come from: the base and its adapter, or a fully fine-tuned
    run's own model."""
    if adapter is None:
        return {"base": source_fingerprint(cfg.model_path)}
    weights = adapter_path(cfg, adapter)
    if weights.name == TRAINED["full"][0]:
        return {"model": fingerprint(weights)}
    return {"base": source_fingerprint(cfg.model_path), "adapter": fingerprint(weights)}


def stage_inputs(cfg: EvalConfig, items: dict[str, list[EvalItem]]) -> dict[str, str]:
    """Every input of the run, as inputs.json records it: each model's weights, each benchmark's items (as
    evaluated: max_items applied), the judge models and the judges' code version."""
    inputs = {f"{name}/{k}": v for name, adapter in models(cfg) for k, v in model_inputs(cfg, adapter).items()}
    inputs |= {f"items/{key}": value_digest(sorted(item_fingerprints(its).items())) for key, its in items.items()}
    judges = {"judge": cfg.judge_model_path, "mis_judge": cfg.mis_judge_model_path}
    inputs |= {name: source_fingerprint(path) for name, path in judges.items() if path}
    return inputs | {"judging": str(JUDGING)}  # the judges' code version: results judged otherwise are redone
