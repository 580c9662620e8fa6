"""Stage 02 and the general mixtures for the studies: a target rejection FRACTION, several sources, and the
curated-malicious baseline (VLGuard's post-hoc recipe, in the variants of `mllm_safety.vlguard`).

CLI for the stage: `python -m mllm_safety.mixtures --preset toy`; the official mixer alone: `python -m mllm_safety.mix`.
"""

from __future__ import annotations

import copy
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .config import prepare_run_dir, stage_main
from .data import load_llava_json, load_vlguard, prefix_images, record_images
from .export import write_llamafactory
from .files import DataFormatError, write_json, write_text
from .judges import FULL_REFUSAL, paper_strmatch
from .mix import (
    DEFAULT_REPLY,
    choose_one_pair,
    mix_with,
    output_name,
    rejection_share,
    to_rejection,
    with_source,
)
from .vlguard import VLGUARD_VARIANTS, vlguard_variant

log = logging.getLogger(__name__)
STAGE = "02_mix"


@dataclass(frozen=True)
class Part:
    """One source of a mixture: draw n records; rejection parts get the reply (one random pair first)."""

    name: str
    records: list[dict[str, Any]]
    n: int
    rejection: bool = False


def mix_parts(
    parts: list[Part], seed: int = 0, reply: str = DEFAULT_REPLY, random_choose: bool = True
) -> list[dict[str, Any]]:
    """Draw every part in order (ids taken by an earlier part are excluded), transform, shuffle."""
    rng = random.Random(seed)
    taken: set[Any] = set()
    mixed = []
    for part in parts:
        pool = [r for r in part.records if r["id"] not in taken]
        if part.n > len(pool):
            raise DataFormatError(f"part {part.name!r}: asked for {part.n} records, {len(pool)} available")
        drawn = [copy.deepcopy(r) for r in rng.sample(pool, part.n)]
        taken.update(r["id"] for r in drawn)
        if part.rejection:
            drawn = [to_rejection(choose_one_pair(r, rng) if random_choose else r, reply) for r in drawn]
        mixed += [with_source(r, part.name) for r in drawn]
    rng.shuffle(mixed)
    return mixed


def split_counts(total: int, names: list[str]) -> dict[str, int]:
    """Split total as evenly as possible over names (the first ones get the remainder)."""
    base, extra = divmod(total, len(names))
    return {name: base + (i < extra) for i, name in enumerate(names)}


def fraction_parts(
    benign: dict[str, list[dict]], rejection: dict[str, list[dict]], fraction: float, total: int
) -> list[Part]:
    """Parts for a mix of `total` records of which round(fraction*total) are rejection records."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"rejection fraction must lie in [0, 1], got {fraction}")
    n_rej = round(fraction * total)
    rej = split_counts(n_rej, list(rejection)) if rejection else {}
    ben = split_counts(total - n_rej, list(benign))
    return [Part(k, rejection[k], n, True) for k, n in rej.items()] + [Part(k, benign[k], n) for k, n in ben.items()]


def mix_by_fraction(
    benign: dict[str, list[dict]],
    rejection: dict[str, list[dict]],
    fraction: float,
    total: int,
    seed: int = 0,
    reply: str = DEFAULT_REPLY,
    random_choose: bool = True,
) -> list[dict[str, Any]]:
    """A mix of `total` records with the given share of benign-rejection records, from several sources."""
    return mix_parts(fraction_parts(benign, rejection, fraction, total), seed, reply, random_choose)


def curated_baseline(
    vlguard_llava: list[dict], instruct: list[dict], n_instruct: int, seed: int = 0, instruct_name: str = "instruct"
) -> list[dict[str, Any]]:
    """VLGuard's post-hoc recipe: all curated safety records plus n_instruct instruction records, shuffled."""
    parts = [Part("vlguard", vlguard_llava, len(vlguard_llava)), Part(instruct_name, instruct, n_instruct)]
    return mix_parts(parts, seed)


# --- Stage 02 ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MixConfig:
    """Stage 02's settings; field names equal the notebook's parameters and the preset's keys."""

    preset: str = "toy"
    runs_root: str = "runs"
    data_root: str = "data/toy"
    seed: int = 0
    instruct_json: str = "llava/llava_v1_5_mix665k.json"  # file2 of the official script
    instruct_image_dir: str = "llava"  # its images' folder under data_root
    rejection_json: str = "llava_med/llava_med_instruct_60k_inline_mention.json"  # file1
    rejection_image_dir: str = "llava_med/images"
    vlguard_json: str = "vlguard/train.json"
    vlguard_image_dir: str = "vlguard/train"
    sample_size1: int = 2000
    sample_size2: int = 5000
    random_choose: bool = True
    change_reply: bool = True
    reply: str = DEFAULT_REPLY
    similar: bool = False
    suffix: str = ""
    rejection_fractions: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.3])
    fraction_total: int = 7000
    baseline_instruct_size: int = 5000
    vlguard_variants: list[str] = field(default_factory=lambda: list(VLGUARD_VARIANTS))
    export_format: str = "both"  # llava, sharegpt or both

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_root) / self.preset / STAGE

    @property
    def stage_dir(self) -> Path:  # the name the other stages use
        return self.run_dir


def _prefix(folder: str) -> str:
    return folder.rstrip("/") + "/" if folder else ""


def load_sources(cfg: MixConfig) -> tuple[list[dict], list[dict], list[dict]]:
    """Instruction, rejection-source and VLGuard records, image paths made relative to data_root."""
    root = Path(cfg.data_root)
    instruct = load_llava_json(root / cfg.instruct_json, allow_duplicate_ids=True)
    rejection = load_llava_json(root / cfg.rejection_json)
    vlguard = load_vlguard(root / cfg.vlguard_json)
    return (
        prefix_images(instruct, _prefix(cfg.instruct_image_dir)),
        prefix_images(rejection, _prefix(cfg.rejection_image_dir)),
        prefix_images(vlguard, _prefix(cfg.vlguard_image_dir)),
    )


def official_mix_name(cfg: MixConfig) -> str:
    """The paper's mixture's name: the official output file name without .json."""
    s1, s2 = Path(cfg.rejection_json).stem, Path(cfg.instruct_json).stem
    return output_name(cfg.sample_size1, s1, cfg.sample_size2, s2, cfg.suffix, cfg.similar).removesuffix(".json")


def build_mixtures(cfg: MixConfig) -> dict[str, list[dict]]:
    """Every mixture of the preset: the official mix, one per rejection fraction, the curated baselines."""
    instruct, rejection, vlguard = load_sources(cfg)
    s1, s2 = Path(cfg.rejection_json).stem, Path(cfg.instruct_json).stem
    mixes = {official_mix_name(cfg): mix_with(cfg, rejection, instruct, s1, s2)}
    for frac in cfg.rejection_fractions:
        mixes[f"frac_{frac * 100:g}pct"] = mix_by_fraction(
            {s2: instruct}, {s1: rejection}, frac, cfg.fraction_total, cfg.seed, cfg.reply, cfg.random_choose
        )
    benign_images = sorted({p for r in instruct for p in record_images(r)})
    for variant in cfg.vlguard_variants:
        curated = vlguard_variant(vlguard, variant, benign_images, cfg.seed)
        mixes[f"vlguard_{variant}"] = curated_baseline(curated, instruct, cfg.baseline_instruct_size, cfg.seed, s2)
    return mixes


def has_refusal(rec: dict[str, Any]) -> bool:
    """True when any gpt answer of the record is a full refusal under the paper's string match."""
    return any(paper_strmatch(t["value"]) == FULL_REFUSAL for t in rec["conversations"] if t["from"] == "gpt")


def summarize(mixes: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per mixture: records, rejection share, image share, records per source."""
    rows = []
    for name, recs in mixes.items():
        sources = Counter(r.get("source", "?") for r in recs)
        rows.append(
            {
                "mixture": name,
                "records": len(recs),
                "rejection_share": rejection_share(recs),
                "refusal_record_share/paper_strmatch": sum(map(has_refusal, recs)) / max(len(recs), 1),
                "image_share": sum(bool(record_images(r)) for r in recs) / max(len(recs), 1),
                "sources": "; ".join(f"{k}={v}" for k, v in sorted(sources.items())),
            }
        )
    return pd.DataFrame(rows).set_index("mixture")


def run(cfg: MixConfig) -> pd.DataFrame:
    """Build and write every mixture (LLaVA json and/or LLaMA-Factory sharegpt); returns the summary table."""
    if cfg.export_format not in ("llava", "sharegpt", "both"):
        raise ValueError(f"export_format must be llava, sharegpt or both, got {cfg.export_format!r}")
    run_dir = prepare_run_dir(cfg.run_dir, cfg)
    mixes = build_mixtures(cfg)
    for name, recs in mixes.items():
        if cfg.export_format != "sharegpt":
            write_json(run_dir / f"{name}.json", recs)
        if cfg.export_format != "llava":
            write_llamafactory(recs, run_dir, name, overwrite=True)
    summary = summarize(mixes)
    write_text(run_dir / "summary.csv", summary.to_csv(float_format="%.6g"))
    write_text(run_dir / "summary.md", summary.round(3).to_markdown() + "\n")
    return summary


def write_metrics(cfg: MixConfig, summary: pd.DataFrame) -> dict[str, Any]:
    """Flat metrics.json: records, rejection share, refusal share (tagged with its judge), image share per mixture."""
    metrics: dict[str, Any] = {"stage": STAGE, "preset": cfg.preset, "seed": cfg.seed, "reply": cfg.reply}
    for name, row in summary.iterrows():
        metrics.update({f"{name}/{k}": row[k] for k in row.index if k != "sources"})
    metrics = {k: (v.item() if hasattr(v, "item") else v) for k, v in metrics.items()}
    write_json(cfg.run_dir / "metrics.json", metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    """CLI: run stage 02 for a preset."""
    return stage_main(MixConfig, run, write_metrics, argv, "python -m mllm_safety.mixtures", __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
