"""The figures' shared look and the training-curve plot: one style for every figure (seaborn, colour-blind-safe
palette, paper size), legends beside the axes rather than over the data, axes fitted to the data, byte-stable
saving, and loss curves read from a run's log_history.jsonl. No torch here: the figures stage and the notebooks
use it alike."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib as mpl
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .files import read_jsonl
from .names import display_label

PALETTE = "colorblind"


def style() -> None:
    """The one style of every figure: paper-size fonts, white grid, colour-blind-safe colours, fixed metadata."""
    sns.set_theme(context="paper", style="whitegrid", palette=PALETTE, font="DejaVu Sans")
    mpl.rcParams.update({"figure.dpi": 150, "savefig.dpi": 200, "pdf.fonttype": 42, "svg.hashsalt": "mllm-safety"})


def legend_outside(ax: Axes, **kwargs: Any) -> None:
    """The axes' legend to their right, where it cannot cover data (tight_layout makes room for it)."""
    kwargs = {"fontsize": 7, "title_fontsize": 7, "frameon": False, **kwargs}
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs)


def fit_limits(values: Iterable[float], low: float = 0.0, high: float = 1.0) -> tuple[float, float]:
    """Axis limits for rates: from `low` to just above the largest value (never past `high`), with a margin so
    points on the edges stay whole."""
    finite = [float(v) for v in values if v == v and math.isfinite(float(v))]
    top = min(high, max([*finite, low + 0.1]))
    margin = 0.05 * (top - low)
    return low - margin, top + margin


def save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """PNG and PDF, with no timestamps or version strings, so reruns on the same metrics give the same bytes; the
    saved area fits every artist (a colour bar's label, a legend outside the axes)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    tight = {"bbox_inches": "tight", "pad_inches": 0.05}
    fig.savefig(paths[0], metadata={"Software": None}, **tight)
    fig.savefig(paths[1], metadata={"CreationDate": None, "Creator": None, "Producer": None}, **tight)
    return paths


def read_log_history(path: str | Path) -> pd.DataFrame:
    """A run's log_history.jsonl as a table (one row per logged step)."""
    rows = read_jsonl(path, "training log", "rerun the training stage")
    return pd.DataFrame(rows)


def plot_loss_curves(histories: dict[str, pd.DataFrame], columns: int = 2) -> Figure:
    """Training loss per optimizer step: one small panel per run (titled with its display label), each with its
    own loss axis, so a curve that falls to almost 0 is as readable as one with spikes."""
    curves = {name: h.dropna(subset=["loss"]) for name, h in histories.items() if "loss" in h}
    curves = {name: h for name, h in curves.items() if len(h)}
    columns = max(1, min(columns, len(curves)))
    rows = max(1, math.ceil(len(curves) / columns))
    fig = Figure(figsize=(7.0, 1.2 + 1.6 * rows))
    axes = fig.subplots(rows, columns, sharex=True, squeeze=False).ravel()
    colors = sns.color_palette(PALETTE, max(1, len(curves)))
    for ax, (name, h), color in zip(axes, curves.items(), colors, strict=False):
        ax.plot(h["step"], h["loss"], color=color, lw=1.0, marker="." if len(h) < 30 else None)
        ax.set_title(display_label(name), fontsize=8)
        ax.set_ylim(0, max(float(h["loss"].max()), 1e-6) * 1.08)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[len(curves) :]:
        ax.set_axis_off()
    if not curves:
        axes[0].text(0.5, 0.5, "no training log was found", ha="center", va="center")
    fig.supxlabel("optimizer step", fontsize=8)
    fig.supylabel("training loss (mean token cross-entropy)", fontsize=8)
    fig.tight_layout()
    return fig
