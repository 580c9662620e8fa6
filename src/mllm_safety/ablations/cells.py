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
from ..core.config import EvalConfig, MixConfig, TrainConfig
from ..core.files import write_json
from ..core.preset import Preset
from ..core.runs import is_finished, start_run
from ..core.tables import read_table
from ..qlora_finetune import train_mixture
from .arms import Arm, Sources, build_mix, relative_to_data

COST = ("wall_time_s", "steps", "samples", "tokens_per_second", "peak_memory_mb", "final_loss")
Base = tuple[str, str | None]  # (model path, stage-4 mix of a control organism, or None)


def runs_dir(preset: Preset) -> Path:
    """Where the cells' run folders live."""
    return preset.studies.stage_dir / "runs"


def control_base(preset: Preset, alignment: str) -> Base:
    """(model path, stage-4 mix) of the base with this text alignment; controls are built here on first use."""
    if alignment == "harmful":
        return preset.studies.model_path, None
    root = preset.studies.stage_dir / "organisms"
    org = dataclasses.replace(
        preset.organism,
        runs_root=str(root),
        preset=alignment,
        model_path=str(root / alignment / "model"),
        text_alignment=alignment,
    )
    model_organism.run(org)
    return org.model_path, str(org.stage4_mix)


def cell_configs(
    preset: Preset, base: Base, arm: Arm, seed: int, run: str
) -> tuple[MixConfig, TrainConfig, EvalConfig]:
    """The three stage configs of one cell, living under runs/<preset>/05_ablations/runs/<run>/."""
    model, stage4_mix = base
    where = {"runs_root": str(runs_dir(preset)), "preset": run, "seed": seed}
    mix = dataclasses.replace(preset.mix, **where)
    if stage4_mix:
        mix = dataclasses.replace(mix, instruct_json=relative_to_data(Path(stage4_mix), preset.mix.data_root))
    train = dataclasses.replace(
        preset.train, **where, model_path=model, train_mixes=["mix"], mask_eos_on_rejection=arm.eos_mask
    )
    ev = dataclasses.replace(preset.eval, **where, model_path=model, eval_adapters=["mix"], eval_base=False)
    return mix, train, ev


def evaluate_once(ev: EvalConfig) -> pd.DataFrame:
    """Stage 04 for one config, reused when it finished with the same config."""
    if is_finished(ev.stage_dir, ev):
        return read_table(ev.stage_dir / "results.csv")
    return evaluate.run(ev).results


def run_cell(
    preset: Preset, base: Base, arm: Arm, seed: int, run: str, sources: Sources | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Mix, train and evaluate one (arm, seed); every step reuses what a previous call finished. `sources` are the
    preset's stage-02 records read once for the grid; a control organism's cells read their own (its stage-4 mix
    replaces the instruction data), so the shared ones are never used for them."""
    mix, train, ev = cell_configs(preset, base, arm, seed, run)
    sources = sources if base[1] is None else None
    mix_cfg = {**mix.to_dict(), "arm": dataclasses.asdict(arm)}
    if not is_finished(mix.stage_dir, mix_cfg, "mix.json"):
        records = build_mix(arm, mix, seed, start_run(mix.stage_dir, mix_cfg, marker="mix.json"), sources)
        write_json(mix.stage_dir / "mix.json", records)
    cost = train_mixture(train, "mix", quiet=True)
    results = evaluate_once(ev).assign(run=run)
    return results, {
        "run": run,
        "arm": arm.key,
        "seed": seed,
        "model": train.model_path,
        **{k: cost.get(k) for k in COST},
    }


def evaluate_bases(preset: Preset, bases: Mapping[str, Base]) -> pd.DataFrame:
    """Each base model (the organism, and the control bases that the grid uses), evaluated once."""
    frames = []
    for alignment, (model, _) in sorted(bases.items()):
        run = f"base_{alignment}"
        where = {"runs_root": str(runs_dir(preset)), "preset": run, "model_path": model}
        ev = dataclasses.replace(preset.eval, **where, eval_adapters=[], eval_base=True)
        frames.append(evaluate_once(ev).assign(run=run))
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
