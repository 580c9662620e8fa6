"""A preset's `benchmarks` entries: each one typed (strictly: `harmful: "false"` is not a boolean and
`categories: benign` is not a list, both are refused rather than guessed), named as the run that evaluates it,
and the whole list checked for two entries that would run under one name (one would silently replace the other).
EvalConfig checks its entries here when a preset is read, before any stage starts; core.benchmarks loads them."""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
from pydantic import ConfigDict, Field

from .benchmarks import LOADERS, MMSB_MODES, VLGUARD_SUBSETS
from .images import MULTI_IMAGE
from .metrics import SCORERS
from .mis import MIS_SPLITS
from .prompts import CHAT_TEMPLATE, FORMATS

# what to write instead, by pydantic's error type
FIXES = {
    "list_type": "write a YAML list, e.g. [benign]",
    "bool_type": "write true or false, unquoted",
    "string_type": "write it as text",
}


class BenchmarkSpec(pydantic.BaseModel):
    """One `benchmarks` entry: the loader (`name`), its folder or file under data_root (`root`), the loader's
    options, and how stage 04 treats it (its run name `key`, `harmful`, `metric`, `multi_image`, `missing_images`)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str
    root: Annotated[str, Field(min_length=1)]
    mode: str | None = None  # MM-SafetyBench (this option's values, and five others', are checked in VALUES)
    subset: str | None = None  # VLGuard test
    split: str | None = None  # MIS
    categories: list[str] | None = None  # MIS: the categories admitted
    scenarios: list[str] | None = None  # MM-SafetyBench: the scenarios admitted
    benchmark: str | None = None  # llava_eval_json: the benchmark's name
    image_root: str | None = None  # llava_eval_json: its images' folder under data_root
    key: str | None = None  # the run's name, when two entries share a loader
    harmful: bool | None = None  # false: a benign control in a harmful benchmark's layout
    metric: str | None = None  # a utility benchmark's scorer
    multi_image: str | None = None  # two images as two inputs or one canvas (EvalConfig.multi_image per entry)
    prompt_format: str | None = None  # this benchmark's own prompt format (the official ScienceQA: vicuna_v1)
    max_new_tokens: Annotated[int, Field(gt=0)] | None = None  # its own answer length (the official ScienceQA: 1024)
    missing_images: str | None = None  # fail, or skip (and count) items with a missing or unusable image


# option -> its known values, each refused with the list
VALUES = {
    "mode": sorted(MMSB_MODES),
    "subset": sorted(VLGUARD_SUBSETS),
    "split": sorted(MIS_SPLITS),
    "multi_image": list(MULTI_IMAGE),
    "metric": list(SCORERS),
    "prompt_format": list(FORMATS) + [CHAT_TEMPLATE],
    "missing_images": ["fail", "skip"],
}


KNOWN = sorted(BenchmarkSpec.model_fields)


def spec_name(spec: dict[str, Any]) -> str:
    """The name stage 04 runs an entry under: the loader (or `key`; a llava_eval_json file's `benchmark`) plus its
    mode, subset or split (mm_safetybench_sd_typo, vlguard_test_unsafes)."""
    name = spec.get("benchmark") if spec["name"] == "llava_eval_json" else spec.get("key", spec["name"])
    suffix = spec.get("mode") or spec.get("subset") or spec.get("split") or ""
    return f"{name}_{suffix}" if suffix else str(name)


def _first_problem(error: pydantic.ValidationError) -> str:
    err = error.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    fix = FIXES.get(err["type"])
    return f"{where}: {err['msg']} (got {err.get('input')!r})" + (f". Fix: {fix}" if fix else "")


def spec_problem(spec: Any) -> str | None:
    """What is wrong with one `benchmarks` entry (a mapping, a known loader, known options of the right types), or
    None."""
    if not isinstance(spec, dict) or "name" not in spec or "root" not in spec:
        return "each benchmark is a mapping with at least name and root"
    if not isinstance(spec["name"], str) or spec["name"] not in LOADERS:
        return f"unknown loader {spec['name']!r}; known: {sorted(LOADERS)}"
    if unknown := sorted(set(spec) - set(KNOWN)):
        return f"unknown option(s) {unknown}; known: {KNOWN}"
    try:
        BenchmarkSpec.model_validate(spec)
    except pydantic.ValidationError as e:
        return _first_problem(e)
    wrong = [k for k, known in VALUES.items() if spec.get(k) not in (None, *known)]
    return f"{wrong[0]} {spec[wrong[0]]!r} is not one of {VALUES[wrong[0]]}" if wrong else None


def specs_problem(specs: list[Any]) -> str | None:
    """The first problem of a preset's `benchmarks` list: a bad entry, or two entries that run under one name."""
    names: dict[str, int] = {}
    for k, spec in enumerate(specs):
        if problem := spec_problem(spec):
            label = spec.get("name", "?") if isinstance(spec, dict) else "?"
            return f"benchmarks[{k}] ({label}): {problem}"
        name = spec_name(spec)
        if name in names:
            field = "benchmark" if spec["name"] == "llava_eval_json" else "key"
            return (
                f"benchmarks[{k}] runs as {name!r}, as benchmarks[{names[name]}] does: one would replace the other. "
                f"Fix: remove one, or give it its own {field}"
            )
        names[name] = k
    return None
