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
the preset's sections. The cells (control organisms, base evaluations, runs) run on the preset's engine (`executor`:
inline, local or slurm; core.executors, docs/cluster.md); the tables are then read from their run folders.
CLI: `python -m mllm_safety.ablations --preset toy` (settings: `core.config.AblationConfig`, engine:
`core.config.ExecutorConfig`); `--cancel` stops the grid's queued and running cells.
Modules: `arms` (what a cell is), `cells` (running one), `engine` (the grid as cells), `tables` (what the stage
writes and shows).
"""

from __future__ import annotations

import pandas as pd

from ..core.cli import run_cli, stage_main, stage_parser
from ..core.config import AblationConfig
from ..core.console import inner_bars_off
from ..core.executors import cancel_grid, run_grid
from ..core.files import write_json, write_text
from ..core.preset import Preset
from ..core.tables import summary_markdown
from . import cells
from .arms import Arm, build_mix, grid, study_rows
from .cells import run_table
from .engine import cells_dir, gather, grid_tasks
from .tables import (
    MIS_TABLE,
    AblationResult,
    controls_table,
    cost_table,
    format_table,
    interval_table,
    key_metrics,
    readout_table,
    study_intervals,
    study_readouts,
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
    "cancel",
    "controls_table",
    "cost_table",
    "format_table",
    "grid",
    "interval_table",
    "key_metrics",
    "main",
    "readout_table",
    "run",
    "study_rows",
    "summary_markdown",
    "what_we_saw",
]


def run(preset: Preset, overwrite: bool = False) -> AblationResult:
    """Run every unfinished cell of the grid (each distinct run once) on the preset's engine, then tabulate and
    summarize from the run folders. Failed cells: a table, then GridFailed. overwrite: ignore the finished cells'
    markers (each cell then checks its own run folders)."""
    cfg = preset.studies
    table = grid(cfg, preset.data.world)
    write_json(cfg.stage_dir / "config.json", cfg.to_dict())
    with inner_bars_off():
        run_grid(grid_tasks(preset, table), preset.engine, cells_dir(preset), overwrite, "studies: cells")
    results, costs, bases = gather(preset, table)
    return save(preset, table, results, run_table(cfg.reference_fraction, cfg.seed, table, costs, bases))


def cancel(preset: Preset) -> str:
    """Stop the grid's queued and running cells (scancel its SLURM jobs, or interrupt its local run)."""
    return cancel_grid(cells_dir(preset))


def save(preset: Preset, table: pd.DataFrame, results: pd.DataFrame, runs: pd.DataFrame) -> AblationResult:
    """Summarize and write every table of the stage, then metrics.json (its last file)."""
    cfg, headline = preset.studies, preset.eval.headline_judge
    summary = study_summary(table, results, runs, headline)
    intervals = study_intervals(cfg, table, headline, preset.eval.bootstrap_samples)
    read = study_readouts(cfg, table, preset.eval.bootstrap_samples)
    tables = (("results", results), ("runs", runs), ("studies", table), ("summary", summary), ("intervals", intervals))
    for name, df in (*tables, *((("readouts", read),) if not read.empty else ())):
        write_text(cfg.stage_dir / f"{name}.csv", df.to_csv(index=False, float_format="%.6g"))
    write_text(cfg.stage_dir / "summary.md", summary_markdown(summary))
    res = AblationResult(results, runs, table, summary, intervals, headline, read, folder=cfg.stage_dir)
    res.metrics = write_metrics(preset, res)
    return res


def main(argv: list[str] | None = None) -> int:
    """CLI: run stage 05 for a preset (the same command re-attaches to its running cells); --cancel stops them."""
    prog = "python -m mllm_safety.ablations"
    parser = stage_parser(prog, __doc__)
    parser.add_argument("--cancel", action="store_true", help="stop this grid's queued and running cells")
    args = parser.parse_args(argv)
    if not args.cancel:
        return stage_main(AblationConfig, run, argv, prog, __doc__)
    return run_cli(lambda: print(cancel(Preset.load(args.preset))))
