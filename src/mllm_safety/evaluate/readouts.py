"""Stage 04's readouts beneath the answers, for every evaluated model (base and fixes alike): on the benchmarks
named in `readouts`, the first-token refusal margin of every item (log p(first token of `readout_refusal`) -
log p(first token of `readout_compliance`), in nats) and one linear harm probe on the hidden state where the
answer starts (harmful vs benign items of those benchmarks, cross-validated with whole topics held out; AUROC).

A fix that *re-exposes* a refusal the model already had moves the harmful items' margin while the probe reads harm
as well as before; one that teaches a new shortcut moves benign and harmful margins alike. Forward passes only, so
the same readouts run on the organism and on a 7B model. Files: `<model>/readouts.csv` (one row per item) and the
stage's `readouts.csv` (per model and benchmark: mean margin with its 95 % interval over items; the probe's AUROC).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.benchmark_specs import spec_name
from ..core.config import EvalConfig
from ..core.files import write_text
from ..core.items import EvalItem
from ..core.metrics import bootstrap_ci
from ..core.readouts import first_step, grouped_auroc, refusal_margin
from ..core.tables import read_table

PER_ITEM = "readouts_items.csv"  # per item, in each model's folder
SUMMARY = "readouts.csv"  # per benchmark, in each model's folder; all models together in the stage folder
MIN_GROUPS = 2  # topics per class the probe needs (folds: at most 5, at least 2)


def item_group(item: EvalItem) -> str:
    """What the probe holds out together: the item's topic (MM-SafetyBench's key phrase) or else its category."""
    return str(item.meta.get("key_phrase") or item.category)


def read_model(
    cfg: EvalConfig, model: Any, processor: Any, items: dict[str, list[EvalItem]], prompt_format: dict[str, str]
) -> tuple[pd.DataFrame, np.ndarray]:
    """Every readout benchmark's items through one forward pass each: per-item margins, and the hidden states."""
    rows, hidden = [], []
    for key in read_keys(cfg):
        step = first_step(model, processor, items[key], prompt_format[key], cfg.batch_size)
        margin = refusal_margin(step, processor.tokenizer, cfg.readout_refusal, cfg.readout_compliance)
        rows += [
            {"benchmark": key, "id": it.id, "harmful": it.harmful, "group": item_group(it), "margin": float(m)}
            for it, m in zip(items[key], margin, strict=True)
        ]
        hidden.append(step.hidden)
    return pd.DataFrame(rows), np.concatenate(hidden)


def read_keys(cfg: EvalConfig) -> list[str]:
    """The readout benchmarks this evaluation has (a preset that replaces `benchmarks` keeps its base's
    `readouts`: the ones it does not evaluate are skipped, and `skipped_keys` names them)."""
    evaluated = {spec_name(s) for s in cfg.benchmarks}
    return [k for k in cfg.readouts if k in evaluated]


def skipped_keys(cfg: EvalConfig) -> list[str]:
    """Readout keys that name no benchmark of this evaluation (stage 04 warns about them once)."""
    read = set(read_keys(cfg))
    return [k for k in cfg.readouts if k not in read]


def summarize(cfg: EvalConfig, per_item: pd.DataFrame, hidden: np.ndarray) -> pd.DataFrame:
    """Per benchmark the mean margin and its 95 % interval over items; over all readout items the probe's AUROC
    (NaN when either class has fewer than MIN_GROUPS topics)."""
    rows = []
    for key, part in per_item.groupby("benchmark", sort=False):
        values = part["margin"].to_numpy()
        lo, hi = bootstrap_ci(values, cfg.bootstrap_samples, cfg.seed)
        rows.append(row(key, "refusal_margin", float(values.mean()), lo, hi, len(values)))
    rows.append(row("all", "harm_probe_auroc", probe(cfg, per_item, hidden), np.nan, np.nan, len(per_item)))
    return pd.DataFrame(rows)


def row(benchmark: str, readout: str, value: float, lo: float, hi: float, n: int) -> dict[str, Any]:
    return {"benchmark": benchmark, "readout": readout, "value": value, "ci_low": lo, "ci_high": hi, "n": n}


def probe(cfg: EvalConfig, per_item: pd.DataFrame, hidden: np.ndarray) -> float:
    """The harm probe's AUROC, cross-validated over topic groups."""
    y = per_item["harmful"].to_numpy(dtype=int)
    groups = per_item["group"].tolist()
    per_class = [len({g for g, label in zip(groups, y, strict=True) if label == c}) for c in (0, 1)]
    if min(per_class) < MIN_GROUPS:
        return float("nan")
    return grouped_auroc(hidden, y, groups, folds=min(5, *per_class), seed=cfg.seed)


def run_readouts(
    cfg: EvalConfig, model: Any, processor: Any, items: dict[str, list[EvalItem]], formats: dict[str, str], out: Path
) -> pd.DataFrame:
    """One model's readouts (each benchmark asked in its prompt format), saved per item under `out`; returns the
    model's summary."""
    per_item, hidden = read_model(cfg, model, processor, items, formats)
    write_text(out / PER_ITEM, per_item.to_csv(index=False, float_format="%.6g"))
    return summarize(cfg, per_item, hidden)


def stage_summary(stage_dir: Path, names: list[str]) -> pd.DataFrame:
    """Every evaluated model's summary in one table (the stage's readouts.csv), models in evaluation order."""
    table = pd.concat([read_table(stage_dir / name / SUMMARY).assign(model=name) for name in names])
    table = table[["model", *[c for c in table.columns if c != "model"]]]
    write_text(stage_dir / SUMMARY, table.to_csv(index=False, float_format="%.6g"))
    return table


def flat(summary: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per model, its readouts keyed readout/<benchmark>/<name> (with _lo and _hi for the margins) for metrics.json."""
    out: dict[str, dict[str, float]] = {}
    for r in summary.itertuples(index=False):
        keys = {f"readout/{r.benchmark}/{r.readout}": r.value}
        if r.readout == "refusal_margin":
            keys |= {
                f"readout/{r.benchmark}/{r.readout}_lo": r.ci_low,
                f"readout/{r.benchmark}/{r.readout}_hi": r.ci_high,
            }
        out.setdefault(r.model, {}).update({k: (None if v != v else float(v)) for k, v in keys.items()})
    return out
