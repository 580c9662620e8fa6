"""Figures from saved files only (no torch import): pure functions, data in, matplotlib Figure out."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure


def read_log_history(path: str | Path) -> pd.DataFrame:
    """A run's log_history.jsonl as a table (one row per logged step)."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return pd.DataFrame(rows)


def plot_loss_curves(histories: dict[str, pd.DataFrame]) -> Figure:
    """Training loss per optimizer step, one line per run."""
    frames = [h.dropna(subset=["loss"]).assign(run=name) for name, h in histories.items() if "loss" in h]
    data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"step": [], "loss": [], "run": []})
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    sns.lineplot(data, x="step", y="loss", hue="run", palette="colorblind", ax=ax)
    ax.set(xlabel="optimizer step", ylabel="training loss (mean token cross-entropy)")
    fig.tight_layout()
    return fig
