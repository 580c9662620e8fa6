"""Stage 05's cells: one (arm, seed) mixed, trained and evaluated under runs/<preset>/05_ablations/runs/<run>/,
the base models each evaluated once, and the control organisms built on first use. Every setting comes from the
one `Preset` the stage was given (a notebook's edited parameters included), never from the preset file again."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .. import evaluate, model_organism
from ..core.config import MixConfig
from ..core.files import write_json
from ..core.fingerprints import data_inputs
from ..core.preset import Preset
from ..core.runs import is_finished, run_lock, start_run
from ..core.tables import read_table
from ..qlora_finetune import train_mixture
from .arms import Arm, Sources, build_mix, relative_to_data

COST = ("wall_time_s", "steps", "samples", "tokens_per_second", "peak_memory_mb", "mean_loss", "last_logged_loss")
Base = tuple[str, str | None]  # (model path, stage-4 mix of a control organism, or None)


def runs_dir(preset: Preset) -> Path:
    """Where the cells' run folders live."""
    return preset.studies.stage_dir / "runs"


def control_base(preset: Preset, alignment: str, build: bool = True) -> Base:
    """(model path, stage-4 mix) of the base with this text alignment; controls are built here on first use
    (build=False: only where they are, for cells that run after their organism's cell)."""
    if alignment == "harmful":
        return preset.studies.model_path, None
    root = preset.studies.stage_dir / "organisms"
    model = str(root / alignment / "model")
    org = preset.child(alignment, runs_root=str(root), model_path=model, text_alignment=alignment)
    if build:
        model_organism.run(org)
    return model, str(org.organism.stage4_mix)


def cell_preset(preset: Preset, base: Base, arm: Arm, seed: int, run: str) -> Preset:
    """The preset of one cell, whose stages live under runs/<preset>/05_ablations/runs/<run>/."""
    model, stage4_mix = base
    values: dict[str, Any] = {"runs_root": str(runs_dir(preset)), "seed": seed, "model_path": model}
    if stage4_mix:
        values["instruct_json"] = relative_to_data(Path(stage4_mix), preset.mix.data_root)
    values |= {"train_mixes": ["mix"], "mask_eos_on_rejection": arm.eos_mask, "eval_adapters": ["mix"]}
    return preset.child(run, **values, eval_base=False)


def evaluate_once(cell: Preset) -> pd.DataFrame:
    """Stage 04 for one cell, reused when it finished with the same config and inputs (weights, items, judges)."""
    ev = cell.eval
    if is_finished(ev.stage_dir, ev, inputs=evaluate.stage_inputs(ev, evaluate.checked_items(ev))):
        return read_table(ev.stage_dir / "results.csv")
    return evaluate.run(cell).results


def run_cell(
    preset: Preset, base: Base, arm: Arm, seed: int, run: str, sources: Sources | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Mix, train and evaluate one (arm, seed); every step reuses what a previous call finished. `sources` are the
    preset's stage-02 records read once for the grid; a control organism's cells read their own (its stage-4 mix
    replaces the instruction data), so the shared ones are never used for them."""
    cell = cell_preset(preset, base, arm, seed, run)
    mix = cell.mix
    sources = sources if base[1] is None else None
    mix_cfg = {**mix.to_dict(), "arm": dataclasses.asdict(arm)}
    build_cell_mix(arm, mix, seed, mix_cfg, sources)
    cost = train_mixture(cell.train, "mix", quiet=True)
    results = evaluate_once(cell).assign(run=run)
    return results, {
        "run": run,
        "arm": arm.key,
        "seed": seed,
        "model": cell.train.model_path,
        **{k: cost.get(k) for k in COST},
    }


def build_cell_mix(arm: Arm, mix: MixConfig, seed: int, mix_cfg: dict[str, Any], sources: Sources | None) -> None:
    """The cell's mixture (mix.json), built unless a finished one was made with this config from these source
    files (their content)."""
    inputs = data_inputs(mix_cfg)
    with run_lock(mix.stage_dir):
        if not is_finished(mix.stage_dir, mix_cfg, "mix.json", inputs):
            run_dir = start_run(mix.stage_dir, mix_cfg, marker="mix.json", inputs=inputs)
            write_json(mix.stage_dir / "mix.json", build_mix(arm, mix, seed, run_dir, sources))


def evaluate_bases(preset: Preset, bases: Mapping[str, Base]) -> pd.DataFrame:
    """Each base model (the organism, and the control bases that the grid uses), evaluated once."""
    frames = []
    for alignment, (model, _) in sorted(bases.items()):
        run = f"base_{alignment}"
        where = {"runs_root": str(runs_dir(preset)), "model_path": model}
        cell = preset.child(run, **where, eval_adapters=[], eval_base=True)
        frames.append(evaluate_once(cell).assign(run=run))
    return pd.concat(frames, ignore_index=True)


def run_table(reference: float, seed: int, table: pd.DataFrame, costs: list[dict], bases: Mapping) -> pd.DataFrame:
    """runs.csv: one row per run (bases included) with what it is and its training cost. `role` names the runs
    the before/after figures compare: base, no_fix (0 % rejection), reference (the reference arm), vlguard."""
    arms = table.drop_duplicates("run").set_index("run")
    roles = {
        Arm(0.0).key: "no_fix",
        Arm(reference).key: "reference",
        Arm(reference, curated="multi_turn").key: "vlguard",
    }
    rows = [
        {
            "run": f"base_{a}",
            "arm": "base",
            "seed": seed,
            "kind": "base",
            "alignment": a,
            "fraction": None,
            "role": "base" if a == "harmful" else "",
            "model": model,
        }
        for a, (model, _) in sorted(bases.items())
    ]
    for cost in costs:
        arm = arms.loc[cost["run"]]
        role = roles.get(cost["arm"], "")
        rows.append({**cost, "kind": "fix", "alignment": arm["alignment"], "fraction": arm["fraction"], "role": role})
    return pd.DataFrame(rows)
