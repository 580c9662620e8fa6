"""Presets (params/<preset>.yaml) and run folders: flat keys mirror the stage configs' fields.

A preset is validated against every stage's config: an unknown key is an error (papermill would only warn).
Each stage saves its effective config as config.json beside its outputs, and refuses to mix its outputs with
a run made under a different config.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .files import DataFormatError, run_cli, write_json

T = TypeVar("T")


def repo_root(start: str | Path | None = None) -> Path:
    """The repository root: the nearest folder upwards holding pyproject.toml and params/."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "params").is_dir():
            return folder
    raise FileNotFoundError(f"no repository root (pyproject.toml + params/) above {here}")


def enter_repo_root() -> Path:
    """chdir to the repository root, so notebooks opened from notebooks/ resolve data/ and runs/ as the CLI does."""
    root = repo_root()
    os.chdir(root)
    return root


def preset_path(preset: str) -> Path:
    """params/<preset>.yaml, or the path itself when given a .yaml file."""
    path = Path(preset) if preset.endswith((".yaml", ".yml")) else repo_root() / "params" / f"{preset}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in (repo_root() / "params").glob("*.yaml"))
        raise FileNotFoundError(f"preset {preset!r}: {path} not found; available presets: {names}")
    return path


def preset_name(preset: str) -> str:
    """The preset's name (file stem), used for runs/<preset>/."""
    return Path(preset).stem


def load_preset(preset: str, known: set[str] | None = None) -> dict[str, Any]:
    """Read a preset's flat keys; when `known` is given, an unknown key is an error."""
    path = preset_path(preset)
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise DataFormatError(f"{path}: a preset is a flat mapping of keys to literals")
    if known is not None:
        unknown = sorted(set(values) - known)
        if unknown:
            raise DataFormatError(f"{path}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    return values


def field_names(cls: type) -> set[str]:
    """The field names of a config dataclass."""
    return {f.name for f in dataclasses.fields(cls)}


def stage_config(cls: type[T], preset: str, **overrides: Any) -> T:
    """Build a stage's config from the preset's keys that the stage knows, plus explicit overrides."""
    values = load_preset(preset)
    picked = {k: v for k, v in values.items() if k in field_names(cls)}
    return cls(**{**picked, "preset": preset_name(preset), **overrides})


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-ready dict."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def prepare_run_dir(run_dir: str | Path, cfg: Any, overwrite: bool = False) -> Path:
    """Create run_dir and save config.json (config dataclass or dict); refuse a different config unless overwrite."""
    run_dir = Path(run_dir)
    saved = run_dir / "config.json"
    current = cfg if isinstance(cfg, dict) else to_dict(cfg)
    if saved.is_file() and not overwrite:
        previous = json.loads(saved.read_text(encoding="utf-8"))
        if previous != current:
            changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
            raise FileExistsError(
                f"{run_dir} holds a run made with a different config (changed: {changed}); "
                "delete the folder or pass overwrite=True"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(saved, current)
    return run_dir


def stage_main(cls: type, run: Callable, write_metrics: Callable, argv: list[str] | None, prog: str, doc: str) -> int:
    """The CLI every stage shares: --preset, run the stage, write its metrics, print where they are."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog=prog, description=doc)
    p.add_argument("--preset", default="toy", help="a name in params/ or a path to a preset .yaml")
    preset = p.parse_args(argv).preset

    def work() -> None:
        cfg = stage_config(cls, preset)
        write_metrics(cfg, run(cfg))
        print(cfg.stage_dir / "metrics.json")

    return run_cli(work)
