"""Presets: `params/<preset>.yaml`, read once into one typed `Preset` that every stage and grid cell receives.

A preset file holds flat keys, each the field of one stage's config (core.config), and may start from another
preset with `base: <name>` and list only the keys that differ. Values that depend on the preset's name are derived
from it, never written as literals: an organism preset (`world: true`) builds its world in `data/<name>/` and its
model in `runs/<name>/00_model_organism/model` unless the file says otherwise. Unknown keys, wrong types and
out-of-range values are errors that name the file and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pydantic
import yaml

from .config import (
    AblationConfig,
    BiasConfig,
    DataConfig,
    EvalConfig,
    ExecutorConfig,
    FigureConfig,
    MixConfig,
    OrganismConfig,
    StageConfig,
    TrainConfig,
    known_keys,
)
from .files import DataFormatError
from .judges import WORLD_TRUTH
from .layout import repo_root, stage_dir
from .mixing import whole_counts_problem
from .names import resolve

BASE = "base"  # the key that names the preset a file starts from
ORGANISM_MODEL = "model"  # the organism's weights, inside its stage folder


def shipped_presets() -> list[str]:
    """The names of the presets in params/, sorted."""
    return sorted(p.stem for p in (repo_root() / "params").glob("*.yaml"))


def preset_path(preset: str, near: Path | None = None) -> Path:
    """The path itself when given a .yaml file; else params/<preset>.yaml, or runs/presets/<preset>.yaml (a preset
    the pipeline derived with --set/--as). A base named inside a file is looked up beside that file first."""
    if preset.endswith((".yaml", ".yml")):
        path = Path(preset)
        if near and not path.is_absolute() and (near / path).is_file():
            path = near / path
    else:
        places = [near / f"{preset}.yaml"] if near else []
        places += [repo_root() / "params" / f"{preset}.yaml", Path("runs") / "presets" / f"{preset}.yaml"]
        path = next((p for p in places if p.is_file()), places[-2])
    if not path.is_file():
        raise FileNotFoundError(f"preset {preset!r}: {path} not found; available presets: {shipped_presets()}")
    return path


def preset_name(preset: str) -> str:
    """The preset's name, used for runs/<preset>/: a file's stem, or the name itself (dots kept: qwen2.5-vl-7b)."""
    return Path(preset).stem if preset.endswith((".yaml", ".yml")) else Path(preset).name


def read_preset_file(path: Path) -> dict[str, Any]:
    """One preset file's own keys (its base not followed); YAML errors and unknown keys name the file."""
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise DataFormatError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(values, dict):
        raise DataFormatError(f"{path}: a preset is a flat mapping of keys to literals")
    check_known(values, path, also={BASE})
    return values


def load_preset(preset: str) -> dict[str, Any]:
    """A preset's flat keys with its bases followed (the file's own keys win); nothing derived is added."""
    path, chain = preset_path(preset), []
    values = read_preset_file(path)
    while BASE in values:
        chain.append(path.resolve())
        base = values.pop(BASE)
        path = preset_path(str(base), near=path.parent)
        if path.resolve() in chain:
            raise DataFormatError(f"{chain[0]}: its bases form a loop through {path}. Fix: remove one `base:`")
        values = {**read_preset_file(path), **values}
    return values


def check_known(values: Mapping[str, Any], source: str | Path, also: set[str] = frozenset()) -> None:
    """Refuse keys that no stage config has, each with the closest known key as a suggestion."""
    unknown = sorted(set(values) - known_keys() - set(also))
    if unknown:
        hints = [f"{k!r}" + _suggest(k) for k in unknown]
        raise DataFormatError(f"{source}: unknown key(s) {', '.join(hints)}. Fix: use the names in docs/presets.md")


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, sorted(known_keys()), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def problems(error: pydantic.ValidationError) -> list[str]:
    """Every problem pydantic found, one line each naming the key: `key: what is wrong (got value)`."""
    out = []
    for err in error.errors():
        message = err["msg"].removeprefix("Value error, ")
        if err["loc"]:
            out.append(f"{'.'.join(str(p) for p in err['loc'])}: {message} (got {err.get('input')!r})")
        else:  # a rule over several keys: the message names them
            out.append(message)
    return out


def derived(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values that follow from the preset's name when the file does not set them (organism presets)."""
    if not values.get("world"):
        return {}
    runs_root = values.get("runs_root", "runs")
    model = stage_dir(runs_root, name, "model_organism") / ORGANISM_MODEL
    return {"data_root": f"data/{name}", "model_path": str(model)}


def studies_problem(sections: Mapping[str, Any]) -> str | None:
    """Stage 05's fractions must be whole numbers of stage 02's fraction_total records: checked when the preset is
    read, not in the middle of stage 05."""
    studies = sections["studies"]
    fractions = [studies.reference_fraction, *(studies.fractions if "fraction" in studies.studies else [])]
    return whole_counts_problem(fractions, sections["mix"].fraction_total, "fractions (stage 05)")


# the preset's sections by concern: attribute -> stage config class
SECTIONS = {
    "data": DataConfig,
    "organism": OrganismConfig,
    "bias": BiasConfig,
    "mix": MixConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "studies": AblationConfig,
    "figures": FigureConfig,
    "engine": ExecutorConfig,  # how stage 05 runs its cells (not a stage)
}
STAGE_SECTION = {cls.stage: attr for attr, cls in SECTIONS.items() if cls.stage}


@dataclass(frozen=True)
class Preset:
    """One preset, read and validated once: its name, its effective flat values and one config per concern.
    Stages and grid cells receive it whole; `replace` gives a new one with some values changed."""

    name: str
    source: str  # the file it was read from (for error messages)
    values: Mapping[str, Any]  # the file's keys with their overrides; derived values are not among them
    data: DataConfig
    organism: OrganismConfig
    bias: BiasConfig
    mix: MixConfig
    train: TrainConfig
    eval: EvalConfig
    studies: AblationConfig
    figures: FigureConfig
    engine: ExecutorConfig

    @classmethod
    def load(cls, preset: str, **overrides: Any) -> Preset:
        """A preset file (bases followed), with explicit overrides (a notebook's parameters, --set values)."""
        return cls.from_values(preset_name(preset), {**load_preset(preset), **overrides}, str(preset_path(preset)))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Preset:
        """The preset named by `params["preset"]` with every preset key in `params` as an override: a notebook's
        parameters cell (its globals()), so that what a user edits there is what every section runs with."""
        plain = (str, int, float, bool, list, dict, type(None))
        keys = {k: v for k, v in params.items() if k in known_keys() and isinstance(v, plain)}
        return cls.load(params["preset"], **keys)

    @classmethod
    def from_values(cls, name: str, values: Mapping[str, Any], source: str = "") -> Preset:
        """Validate every section at once; one DataFormatError names the file and every bad key."""
        check_known(values, source or name, also={"preset"})
        values = {k: v for k, v in values.items() if k != "preset"}  # the name is the preset's own
        full = {**derived(name, values), **values, "preset": name}
        sections, found = {}, []
        for attr, config in SECTIONS.items():
            try:
                sections[attr] = config.from_params(full)
            except pydantic.ValidationError as e:
                found += problems(e)
        if WORLD_TRUTH in full.get("judges", []) and not full.get("world"):
            found.append("judges: world_truth reads the organism's world only; it needs world: true")
        if not found and (problem := studies_problem(sections)):
            found.append(problem)
        if found:
            raise DataFormatError(f"{source or name}: " + "; ".join(dict.fromkeys(found)))
        mix = sections["mix"]  # `official` in the mixture lists is the official mixture for these sizes
        sections["train"] = dataclasses.replace(
            sections["train"], train_mixes=resolve(sections["train"].train_mixes, mix)
        )
        sections["eval"] = dataclasses.replace(
            sections["eval"], eval_adapters=resolve(sections["eval"].eval_adapters, mix)
        )
        return cls(name, source, MappingProxyType(values), **sections)

    def replace(self, **values: Any) -> Preset:
        """The same preset with some values changed (validated again; derived paths follow a new runs_root)."""
        if "preset" in values:
            raise ValueError("a preset's name is not a value: load the other preset, or save this one under it")
        return Preset.from_values(self.name, {**self.values, **values}, self.source)

    def child(self, name: str, **values: Any) -> Preset:
        """A preset for a run inside this one (a grid cell, a control organism), named `name`: this preset's values,
        its name-derived paths kept as they are, and some values changed."""
        return Preset.from_values(name, {**derived(self.name, self.values), **self.values, **values}, self.source)

    def stage(self, stage: str) -> StageConfig:
        """The config of one stage by its name (core.layout.STAGES)."""
        return getattr(self, STAGE_SECTION[stage])

    def effective(self) -> dict[str, Any]:
        """Every key with the value the stages use (derived ones included): what a notebook's parameters get."""
        out: dict[str, Any] = {}
        for attr in SECTIONS:
            out.update(getattr(self, attr).to_dict())
        return out


def validate_preset(preset: str) -> dict[str, Any]:
    """Check every stage's keys of a preset at once (types, ranges, known values); returns its values (the
    file's keys, bases followed)."""
    return dict(Preset.load(preset).values)
