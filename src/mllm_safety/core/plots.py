"""The figures' shared look and the training-curve plot: one style for every figure (seaborn, colour-blind-safe
palette, paper size), byte-stable saving, and loss curves read from a run's log_history.jsonl. No torch here:
the figures stage and the notebooks use it alike."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .files import read_jsonl

PALETTE = "colorblind"


def style() -> None:
    """The one style of every figure: paper-size fonts, white grid, colour-blind-safe colours, fixed metadata."""
    sns.set_theme(context="paper", style="whitegrid", palette=PALETTE, font="DejaVu Sans")
    mpl.rcParams.update({"figure.dpi": 150, "savefig.dpi": 200, "pdf.fonttype": 42, "svg.hashsalt": "mllm-safety"})


def save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """PNG and PDF, with no timestamps or version strings, so reruns on the same metrics give the same bytes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], metadata={"Software": None})
    fig.savefig(paths[1], metadata={"CreationDate": None, "Creator": None, "Producer": None})
    return paths


def read_log_history(path: str | Path) -> pd.DataFrame:
    """A run's log_history.jsonl as a table (one row per logged step)."""
    rows = read_jsonl(path, "training log", "rerun the training stage")
    return pd.DataFrame(rows)


def plot_loss_curves(histories: dict[str, pd.DataFrame]) -> Figure:
    """Training loss per optimizer step, one line per run."""
    frames = [h.dropna(subset=["loss"]).assign(run=name) for name, h in histories.items() if "loss" in h]
    data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"step": [], "loss": [], "run": []})
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    sns.lineplot(data, x="step", y="loss", hue="run", palette=PALETTE, ax=ax)
    ax.set(xlabel="optimizer step", ylabel="training loss (mean token cross-entropy)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig
