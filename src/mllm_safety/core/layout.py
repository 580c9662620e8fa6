"""Where things live: the pipeline's stages in order, their run folders, and the repository root.

Stage NN's notebook is notebooks/NN_<name>.ipynb, its module mllm_safety.<name>, its run folder
runs/<preset>/NN_<name>/. A stage finds an earlier stage's files through `upstream` alone.
"""

from __future__ import annotations

import os
from pathlib import Path

STAGES = ("model_organism", "data_bias", "mix_rejection_data", "qlora_finetune", "evaluate", "ablations", "figures")


def stage_folder(stage: str) -> str:
    """A stage's folder name, `NN_<name>` (e.g. 03_qlora_finetune)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; the stages are {list(STAGES)}")
    return f"{STAGES.index(stage):02d}_{stage}"


def stage_dir(runs_root: str | Path, preset: str, stage: str) -> Path:
    """Where a stage of a preset writes: runs_root/<preset>/NN_<name>/."""
    return Path(runs_root) / preset / stage_folder(stage)


def upstream(runs_dir: str | Path, reader: str, stage: str) -> Path:
    """Where stage `reader` finds what the earlier `stage` wrote for the same preset (runs_dir: runs_root/<preset>).
    The one way a stage reads another stage's files: a stage never reads a later one's."""
    if STAGES.index(stage) >= STAGES.index(reader):
        raise ValueError(f"stage {reader} cannot read the files of {stage}: it runs at the same time or later")
    return Path(runs_dir) / stage_folder(stage)


def repo_root(start: str | Path | None = None) -> Path:
    """The repository root: the nearest folder upwards holding pyproject.toml and params/, from the working
    directory (or `start`), else from this package's own location (a checkout installed with `pip install -e`)."""
    places = [Path(start or Path.cwd()).resolve(), Path(__file__).resolve()]
    for here in places:
        for folder in (here, *here.parents):
            if (folder / "pyproject.toml").is_file() and (folder / "params").is_dir():
                return folder
    raise FileNotFoundError(f"no repository root (pyproject.toml + params/) above {places[0]}")


def enter_repo_root() -> Path:
    """chdir to the repository root, so notebooks opened from notebooks/ resolve data/ and runs/ as the CLI does."""
    root = repo_root()
    os.chdir(root)
    return root
