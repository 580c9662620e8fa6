"""Stage 05: the paper's studies as tables of runs that change one factor at a time.

An *arm* is one way to build the fix mixture and train on it (rejection fraction, EOS masking, reply style,
image content and source of the rejection samples, or a curated VLGuard variant instead, and which text
alignment the base organism had). A *study* is a list of rows, the first being the reference arm. Each arm runs
on several seeds; each (arm, seed) is a *cell*: a stage-02 mixture, a stage-03 adapter and a stage-04 evaluation of
its own under runs/<preset>/05_ablations/runs/<arm>-s<seed>/, reused when it exists with the same config, so an
interrupted study resumes. The base models are evaluated once. Tables: results.csv (tidy, every run), runs.csv
(every run, bases included: what it is, its role in the figures, its training cost), studies.csv (which run fills
which row), summary.csv/.md (mean and spread over seeds), intervals.csv (seeds and items).
The stage receives the whole preset (core.preset.Preset): its cells' mixing, training and evaluation settings are
the preset's sections. CLI: `python -m mllm_safety.ablations --preset toy` (settings: `core.config.AblationConfig`).
Modules: `arms` (what a cell is), `cells` (running one), `tables` (what the stage writes and shows).
"""

from __future__ import annotations

import dataclasses

import pandas as pd
from tqdm.auto import tqdm

from ..core.cli import stage_main
from ..core.config import AblationConfig
from ..core.console import inner_bars_off
from ..core.files import write_json, write_text
from ..core.preset import Preset
from ..core.tables import summary_markdown
from ..mix_rejection_data import load_sources
from . import cells
from .arms import Arm, build_mix, grid, study_rows
from .cells import control_base, evaluate_bases, run_cell, run_table
from .tables import (
    MIS_TABLE,
    AblationResult,
    controls_table,
    cost_table,
    format_table,
    interval_table,
    key_metrics,
    study_intervals,
    study_summary,
    what_we_saw,
    write_metrics,
)

__all__ = [
    "cells",
    "MIS_TABLE",
    "AblationResult",
    "Arm",
    "build_mix",
    "controls_table",
    "cost_table",
    "format_table",
    "grid",
    "interval_table",
    "key_metrics",
    "main",
    "run",
    "study_rows",
    "summary_markdown",
    "what_we_saw",
]


def run(preset: Preset, overwrite: bool = False) -> AblationResult:
    """Run every (study, row, seed) of the grid (each distinct run once), then tabulate and summarize.
    Each run guards its own folder; the stage folder's config.json records the latest grid."""
    cfg = preset.studies
    table = grid(cfg, preset.data.world)
    write_json(cfg.stage_dir / "config.json", cfg.to_dict())
    todo = table.drop_duplicates("run")
    alignments = sorted(set(table["alignment"]))
    sources = load_sources(preset.mix) if len(todo) else None  # read once for every cell
    bases, frames, costs = {}, [], []
    with inner_bars_off(), tqdm(total=len(alignments) + len(todo), desc="studies: bases and runs") as progress:
        for alignment in alignments:  # each base built (controls) or checked once, and evaluated once
            bases[alignment] = control_base(preset, alignment)
            progress.update()
        frames.append(evaluate_bases(preset, bases))
        for row in todo.itertuples():
            arm = Arm(**{f.name: getattr(row, f.name) for f in dataclasses.fields(Arm)})
            res, cost = run_cell(preset, bases[arm.alignment], arm, row.seed, row.run, sources)
            frames.append(res)
            costs.append(cost)
            progress.update()
    results = pd.concat(frames, ignore_index=True)
    return save(preset, table, results, run_table(cfg.reference_fraction, cfg.seed, table, costs, bases))


def save(preset: Preset, table: pd.DataFrame, results: pd.DataFrame, runs: pd.DataFrame) -> AblationResult:
    """Summarize and write every table of the stage, then metrics.json (its last file)."""
    cfg, headline = preset.studies, preset.eval.headline_judge
    summary = study_summary(table, results, runs, headline)
    intervals = study_intervals(cfg, table, headline, preset.eval.bootstrap_samples)
    tables = (("results", results), ("runs", runs), ("studies", table), ("summary", summary), ("intervals", intervals))
    for name, df in tables:
        write_text(cfg.stage_dir / f"{name}.csv", df.to_csv(index=False, float_format="%.6g"))
    write_text(cfg.stage_dir / "summary.md", summary_markdown(summary))
    res = AblationResult(results, runs, table, summary, intervals, headline, folder=cfg.stage_dir)
    res.metrics = write_metrics(preset, res)
    return res


def main(argv: list[str] | None = None) -> int:
    """CLI: run stage 05 for a preset."""
    return stage_main(AblationConfig, run, argv, "python -m mllm_safety.ablations", __doc__)
