"""The tables stages pass to each other (results.csv, studies.csv, summary.csv, ...): one reader that checks
what it reads, and the study summary as markdown."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .files import DataFormatError

# Columns each table must have; a table missing one (a truncated or foreign file) is an error, not a figure.
REQUIRED = {
    "results.csv": ("model", "benchmark", "mode", "category", "judge", "metric", "value", "n"),
    "agreement.csv": (
        "model",
        "benchmark",
        "judge_a",
        "judge_b",
        "n",
        "both_refuse",
        "only_a_refuses",
        "only_b_refuses",
        "neither_refuses",
    ),
    "studies.csv": ("study", "order", "row", "arm", "run", "seed", "fraction"),
    "runs.csv": ("run", "arm", "seed"),
    "summary.csv": ("study", "order", "row", "arm"),
    "stats.csv": ("dataset",),
    "answer_lengths.csv": ("dataset", "words"),
}


def read_table(path: str | Path) -> pd.DataFrame:
    """A table written by a stage; empty strings stay empty (not NaN) in the text columns mode and adapter."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the stage that writes it first (see the README)")
    try:
        table = pd.read_csv(path, dtype={"mode": str, "adapter": str}).fillna({"mode": "", "adapter": ""})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{path}: not a readable CSV table ({e}). Fix: rerun the stage that writes it") from None
    required = REQUIRED.get(path.name, ())
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataFormatError(f"{path}: missing column(s) {missing}. Fix: rerun the stage that writes it")
    holes = table[list(required)].isna().any(axis=1)
    if holes.any():  # a row cut short (a file truncated mid-write) leaves empty cells at its end
        row = int(holes.idxmax()) + 2
        raise DataFormatError(f"{path}: line {row} is incomplete. Fix: rerun the stage that writes it")
    return table


def summary_markdown(summary: pd.DataFrame, skip: tuple[str, ...] = ()) -> str:
    """One markdown table per study: mean ± sd over seeds (n seeds in the header); `skip` drops metrics."""
    out = []
    for study, part in summary.groupby("study", sort=False):
        metrics = [c[: -len(" mean")] for c in part.columns if c.endswith(" mean") and c[: -len(" mean")] not in skip]
        n = int(part[f"{metrics[0]} count"].max()) if metrics else 0
        table = part[["row"]].copy()
        for m in metrics:
            pairs = zip(part[f"{m} mean"], part[f"{m} std"], strict=True)
            table[m] = [f"{a:.2f} ± {b:.2f}" if b == b else f"{a:.2f}" for a, b in pairs]
        out.append(f"### {study} (mean ± sd over {n} seeds)\n\n{table.to_markdown(index=False)}\n")
    return "\n".join(out)
