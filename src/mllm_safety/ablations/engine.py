"""Stage 05's grid as cells for an engine (core.executors): each control organism, each base model's evaluation and
each (arm, seed) run is a module-level function of a picklable spec (the preset inside, as data) that writes its
run folders, and `gather` reads those folders alone, so the tables are the same whichever engine ran the cells.
Wave 0 builds the control organisms; wave 1 evaluates the bases and runs the arms (a control's cells need its
organism, and are reported, not run, when it failed)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.fingerprints import data_inputs, fingerprint, source_fingerprint, value_digest
from ..core.judges import JUDGING
from ..core.layout import stage_dir
from ..core.preset import Preset
from ..core.tables import read_table
from ..core.tasks import Task
from ..mix_rejection_data import load_sources
from ..qlora_finetune import RECIPE
from .arms import Arm, Sources
from .cells import COST, Base, cell_preset, control_base, evaluate_bases, run_cell, runs_dir

HARMFUL = "harmful"  # the preset's own base: no organism cell to wait for
_SOURCES: dict[str, Sources] = {}  # stage 02's records, read once per process (a worker runs many cells)


@dataclass(frozen=True)
class PresetData:
    """A preset as plain data for a worker: its name, its values and the file they came from (never read again)."""

    name: str
    values: dict[str, Any]
    source: str

    @classmethod
    def of(cls, preset: Preset) -> PresetData:
        return cls(preset.name, dict(preset.values), preset.source)

    def load(self) -> Preset:
        return Preset.from_values(self.name, self.values, self.source)


@dataclass(frozen=True)
class CellSpec:
    """What one cell runs: the stage's preset, the base's text alignment and, for a run, its arm, seed and name."""

    preset: PresetData
    alignment: str
    arm: dict[str, Any] | None = None
    seed: int = 0
    run: str = ""


def cells_dir(preset: Preset) -> Path:
    """The grid's markers, logs, submission record and SLURM job files."""
    return preset.studies.stage_dir / "cells"


def organism_cell(spec: CellSpec) -> None:
    """Build a control organism (its text alignment is spec.alignment)."""
    control_base(spec.preset.load(), spec.alignment)


def base_cell(spec: CellSpec) -> None:
    """Evaluate one base model (the preset's, or a control organism built by its own cell)."""
    preset = spec.preset.load()
    evaluate_bases(preset, {spec.alignment: control_base(preset, spec.alignment, build=False)})


def arm_cell(spec: CellSpec) -> None:
    """Mix, train and evaluate one (arm, seed)."""
    preset, arm = spec.preset.load(), Arm(**(spec.arm or {}))
    base = control_base(preset, arm.alignment, build=False)
    run_cell(preset, base, arm, spec.seed, spec.run, shared_sources(preset) if base[1] is None else None)


def shared_sources(preset: Preset) -> Sources:
    """Stage 02's records for this preset, read once per process."""
    key = value_digest(preset.mix.to_dict())
    if key not in _SOURCES:
        _SOURCES.clear()
        _SOURCES[key] = load_sources(preset.mix)
    return _SOURCES[key]


def base_inputs(model: str) -> dict[str, str]:
    """A base evaluation's weights and the judges' code version."""
    return {"base": source_fingerprint(model), "judging": str(JUDGING)}


def arm_inputs(mix: dict[str, Any], base: Base, finetune: str) -> dict[str, str]:
    """The data files a run mixes from, its base weights, for a control its organism's instruction mix, and the
    code versions of training and judging (a cell made by older code is run again)."""
    stage4 = {"stage4_mix": fingerprint(base[1])} if base[1] else {}
    return data_inputs(mix) | base_inputs(base[0]) | stage4 | {"recipe": str(RECIPE[finetune])}


def row_arm(row: Any) -> Arm:
    return Arm(**{f.name: getattr(row, f.name) for f in dataclasses.fields(Arm)})


def grid_tasks(preset: Preset, table: pd.DataFrame) -> list[Task]:
    """Every cell of the grid: the control organisms, then each base's evaluation and each distinct run."""
    data, alignments = PresetData.of(preset), sorted(set(table["alignment"]))
    needs = {a: () if a == HARMFUL else (f"organism_{a}",) for a in alignments}
    tasks = [
        Task(f"organism_{a}", organism_cell, CellSpec(data, a), {"alignment": a, **preset.organism.to_dict()})
        for a in alignments
        if a != HARMFUL
    ]
    for a in alignments:
        model = control_base(preset, a, build=False)[0]
        config = {"alignment": a, **preset.eval.to_dict()}
        tasks.append(Task(f"base_{a}", base_cell, CellSpec(data, a), config, partial(base_inputs, model), 1, needs[a]))
    sections = {s: getattr(preset, s).to_dict() for s in ("mix", "train", "eval")}
    for row in table.drop_duplicates("run").itertuples():
        arm = row_arm(row)
        spec = CellSpec(data, arm.alignment, dataclasses.asdict(arm), row.seed, row.run)
        config = {"arm": dataclasses.asdict(arm), "seed": row.seed, **sections}
        base = control_base(preset, arm.alignment, build=False)
        inputs = partial(arm_inputs, sections["mix"], base, preset.train.finetune)
        tasks.append(Task(row.run, arm_cell, spec, config, inputs, 1, needs[arm.alignment]))
    return tasks


def gather(preset: Preset, table: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, Any]], dict[str, Base]]:
    """From the run folders alone: every run's results (bases first), each run's training cost, and the bases."""
    bases = {a: control_base(preset, a, build=False) for a in sorted(set(table["alignment"]))}
    base_dir = partial(stage_dir, runs_dir(preset), stage="evaluate")
    frames = [read_table(base_dir(f"base_{a}") / "results.csv").assign(run=f"base_{a}") for a in bases]
    costs = []
    for row in table.drop_duplicates("run").itertuples():
        arm = row_arm(row)
        cell = cell_preset(preset, bases[arm.alignment], arm, row.seed, row.run)
        frames.append(read_table(cell.eval.stage_dir / "results.csv").assign(run=row.run))
        metrics = json.loads((cell.train.stage_dir / "mix" / "metrics.json").read_text(encoding="utf-8"))
        costs.append(
            {"run": row.run, "arm": arm.key, "seed": row.seed, "model": cell.train.model_path}
            | {k: metrics.get(k) for k in COST}
        )
    return pd.concat(frames, ignore_index=True), costs, bases
