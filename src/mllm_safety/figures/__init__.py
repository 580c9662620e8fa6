"""Stage 06, figures: every figure and the results table from saved metrics alone (no torch, seconds on a CPU).

Reads runs/<preset>/: 01_data_bias/{stats.csv, answer_lengths.csv}, 03_qlora_finetune/*/log_history.jsonl,
04_evaluate/agreement.csv, 05_ablations/{results.csv, studies.csv, runs.csv, summary.csv, intervals.csv,
metrics.json}; safety numbers are read with the preset's headline judge (recorded in metrics.json); writes
PNG + PDF per figure and results.md into figures/<preset>/. Plot functions are pure (tables in, Figure out); one
style for all (seaborn, colour-blind-safe palette, paper size); files are byte-stable for the same metrics.
CLI: `python -m mllm_safety.figures --preset toy` (settings: `core.config.FigureConfig`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from ..core.cli import stage_main
from ..core.config import FigureConfig
from ..core.files import write_text
from ..core.layout import upstream
from ..core.plots import plot_loss_curves, read_log_history, save, style
from ..core.preset import Preset
from ..core.results import StageResult
from ..core.tables import read_table, summary_markdown
from .draw import (
    JUDGE,
    attack_columns,
    attack_labels,
    mis_bars,
    mis_columns,
    plot_asr_vs_fraction,
    plot_category_heatmap,
    plot_data_bias,
    plot_judge_agreement,
    plot_mis,
    plot_modality_gap,
    plot_tradeoff,
)

log = logging.getLogger(__name__)
__all__ = [
    "FigureResult",
    "attack_columns",
    "attack_labels",
    "build_figures",
    "figure_makers",
    "main",
    "mis_bars",
    "mis_columns",
    "plot_asr_vs_fraction",
    "plot_tradeoff",
    "run",
    "what_we_saw",
]


# --- reading the saved metrics and writing everything --------------------------------------------------------


def reference_runs(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Label -> runs of the models the before/after figures compare, read from runs.csv's `role` column."""
    labels = {"base": "base (no fix)", "no_fix": "LoRA, 0% rejection", "vlguard": "LoRA, VLGuard"}
    refs = {}
    for role in ("base", "no_fix", "reference", "vlguard"):
        part = runs[runs["role"] == role]
        if len(part):
            label = labels.get(role) or f"LoRA, {100 * float(part['fraction'].iloc[0]):g}% rejection"
            refs[label] = list(part["run"])
    return refs


def results_markdown(runs_dir: Path) -> str:
    """The README's results: the studies' summary, with the judge and decoding that produced the numbers."""
    ablations = upstream(runs_dir, "figures", "ablations")
    meta = json.loads((ablations / "metrics.json").read_text(encoding="utf-8"))
    head = (
        f"Model: `{meta['model']}`, prompt format `{meta['prompt_format']}`, decoding "
        f"`{json.dumps(meta['decoding'], sort_keys=True)}`; judges per column: "
        + ", ".join(f"{k} = `{v}`" for k, v in meta["judges"].items())
        + ".\n\n"
    )
    summary = read_table(ablations / "summary.csv")
    # wall time varies from machine to machine; steps do not: the committed table must regenerate byte for byte
    foot = "\nTraining wall time per run: `runs/<preset>/05_ablations/runs.csv` and `summary.csv`.\n"
    return head + summary_markdown(summary, skip=("train s",)) + foot


def figure_makers(runs_dir: Path) -> dict[str, Callable[[], Figure]]:
    """Figure name -> a call that draws it from the preset's saved metrics (the tables are read once, here)."""
    where = {
        stage: upstream(runs_dir, "figures", stage)
        for stage in ("data_bias", "qlora_finetune", "evaluate", "ablations")
    }
    abl = where["ablations"]
    results, studies, runs = (read_table(abl / f"{name}.csv") for name in ("results", "studies", "runs"))
    judge = json.loads((abl / "metrics.json").read_text(encoding="utf-8")).get("headline_judge", JUDGE)
    refs = reference_runs(runs)
    logs = sorted(where["qlora_finetune"].glob("*/log_history.jsonl"))
    histories = {p.parent.name: read_log_history(p) for p in logs}
    figures: dict[str, Callable[[], Figure]] = {
        "data_bias": lambda: plot_data_bias(
            read_table(where["data_bias"] / "stats.csv").set_index("dataset"),
            read_table(where["data_bias"] / "answer_lengths.csv"),
        ),
        "asr_vs_fraction": lambda: plot_asr_vs_fraction(
            results, studies, runs, read_table(abl / "intervals.csv"), judge
        ),
        "tradeoff": lambda: plot_tradeoff(results, studies, judge),
        "mis": lambda: plot_mis(results, runs, read_table(abl / "intervals.csv"), judge),
        "modality_gap": lambda: plot_modality_gap(results, refs, judge),
        "category_heatmap": lambda: plot_category_heatmap(results, refs, judge=judge),
        "training_curves": lambda: plot_loss_curves(histories),
        "judge_agreement": lambda: plot_judge_agreement(read_table(where["evaluate"] / "agreement.csv")),
    }
    return figures


def build_figures(runs_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Every figure and the results table from a preset's saved metrics; returns the written paths."""
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    style()
    paths = []
    for name, make in figure_makers(runs_dir).items():
        paths += save(make(), out_dir, name)
    paths.append(write_text(out_dir / "results.md", results_markdown(runs_dir)))
    return paths


@dataclass
class FigureResult(StageResult):
    """Stage 06's files (figures and results.md) and the studies' summary they were drawn from."""

    paths: list[Path]
    summary: pd.DataFrame

    def what_we_saw(self) -> str:
        return what_we_saw(self)


def what_we_saw(res: FigureResult, metric: str = "ASR typo") -> str:
    """The headline study in words: the metric per rejection fraction, and the curated baseline beside it."""
    summary = res.summary
    col = f"{metric} mean"
    if col not in summary.columns:
        return f"- `{metric}` was not measured in this preset."
    lines = []
    fraction = summary[summary["study"] == "fraction"]
    if len(fraction):
        cells = ", ".join(f"{r} {v:.2f}" for r, v in zip(fraction["row"], fraction[col], strict=True))
        lines.append(f"- {metric} by rejection fraction (mean over seeds): {cells}.")
    curated = summary[summary["study"] == "curated"]
    if len(curated):
        cells = ", ".join(f"{r} {v:.2f}" for r, v in zip(curated["row"], curated[col], strict=True))
        lines.append(f"- Benign rejection against curated VLGuard data at matched size: {cells}.")
    return "\n".join(lines) or "- The studies of this preset hold neither the fraction nor the curated study."


def run(preset: Preset, overwrite: bool = False) -> FigureResult:
    """Stage 06: figures_root/<preset>/ from runs_root/<preset>/ (a figure is always redrawn from the metrics)."""
    cfg = preset.figures
    runs = Path(cfg.runs_root) / cfg.preset
    paths = build_figures(runs, cfg.stage_dir)
    return FigureResult(paths, read_table(cfg.upstream("ablations") / "summary.csv"), folder=cfg.stage_dir)


def main(argv: list[str] | None = None) -> int:
    """CLI: regenerate figures/<preset>/ from runs/<preset>/."""
    return stage_main(FigureConfig, run, argv, "python -m mllm_safety.figures", __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
