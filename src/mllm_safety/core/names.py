"""Mixture and run names, built and read back in one place.

Stage 02 writes one mixture per name: the paper's official mixture `{n1}_{file1}_{n2}_{file2}{suffix}[_similar]`
(the official script's output name), `frac_<pct>pct` for a fraction mixture, `vlguard_<variant>` for a curated
baseline and `mis_reasoning` for MIS's reasoning data. Presets and notebooks name the official mixture `official`
instead of spelling out its sizes, so changing a sample size in stage 02 cannot leave stages 03 and 04 pointing at
a mixture that no longer exists: `resolve` turns `official` into the name for the preset's own sizes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

OFFICIAL = "official"  # stands for the paper's mixture in train_mixes and eval_adapters
MIS_REASONING = "mis_reasoning"
_OFFICIAL_NAME = re.compile(r"^(\d+)_.+?_(\d+)_.+$")
_FRACTION_NAME = re.compile(r"frac_([\d.]+)pct")


def output_name(n1: int, file1: str | Path, n2: int, file2: str | Path, suffix: str = "", similar: bool = False) -> str:
    """The official output file name: {n1}_{stem1}_{n2}_{stem2}{suffix}[_similar].json."""
    return f"{n1}_{Path(file1).stem}_{n2}_{Path(file2).stem}{suffix}{'_similar' if similar else ''}.json"


def official_mix_name(mix: Any) -> str:
    """The paper's mixture's name for a stage-02 config: the official output file name without .json."""
    s1, s2 = Path(mix.rejection_json).stem, Path(mix.instruct_json).stem
    return output_name(mix.sample_size1, s1, mix.sample_size2, s2, mix.suffix, mix.similar).removesuffix(".json")


def fraction_mix_name(fraction: float) -> str:
    """The name of the mixture with this share of rejection records: frac_10pct."""
    return f"frac_{fraction * 100:g}pct"


def vlguard_mix_name(variant: str) -> str:
    """The name of a curated VLGuard baseline: vlguard_multi_turn."""
    return f"vlguard_{variant}"


def resolve(names: list[str], mix: Any) -> list[str]:
    """Mixture names with `official` replaced by the official mixture's name for this stage-02 config."""
    return [official_mix_name(mix) if name == OFFICIAL else name for name in names]


def display_label(name: str) -> str:
    """A short label for a model or mixture name: 'base', 'VLGuard', 'rejection 28.6 %', 'rejection 10 %'."""
    if name == "base":
        return "base"
    if name.startswith("vlguard_"):
        variant = name.removeprefix("vlguard_")
        return "VLGuard" if variant == "multi_turn" else f"VLGuard ({variant.replace('_', ' ')})"
    if m := _FRACTION_NAME.fullmatch(name):
        return f"rejection {m.group(1)} %"
    if m := _OFFICIAL_NAME.match(name):
        n1, n2 = int(m.group(1)), int(m.group(2))
        return f"rejection {100 * n1 / (n1 + n2):.1f} % (official mix)"
    return name
