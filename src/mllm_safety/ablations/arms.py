"""Stage 05's arms and grid: what one fix is (an `Arm`), which arms each study compares, the grid of
(study, row, seed) cells, and how an arm's mixture is built from the sources stage 02 reads."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from ..core.config import AblationConfig, MixConfig
from ..core.files import DataFormatError
from ..core.mixing import Part, curated_baseline, mix_by_fraction, mix_parts, restyle_questions, restyle_replies
from ..core.names import MIS_REASONING, vlguard_mix_name
from ..core.vlguard import VLGUARD_VARIANTS, vlguard_variant
from ..core.vocabulary import ALIGNMENTS, REPLY_STYLES, record_images, strip_image_tags
from ..mix_rejection_data import load_mis_reasoning, load_sources

log = logging.getLogger(__name__)

IMAGE_CONTENT = ("real", "blank", "noise", "none")
SOURCES = ("domain", "in_distribution")


@dataclass(frozen=True)
class Arm:
    """How one fix is built: the mixture's recipe, the training switch, and the base organism's text alignment."""

    fraction: float  # share of rejection records in the mixture
    eos_mask: bool = True  # mask the end of turn after rejection answers
    reply: str = "plain"  # plain, varied or detailed (REPLY_STYLES)
    images: str = "real"  # image of the rejection samples: real, blank, noise or none
    source: str = "domain"  # rejection samples from the distinct domain or from the instruction data itself
    questions: str = "own"  # the rejection samples' questions: their own, the instruction data's, or attack-style
    curated: str = ""  # a VLGuard variant (or MIS_REASONING) at matched size instead of benign rejection samples
    alignment: str = "harmful"  # the base's stage-1 alignment (controls: decoy or none; organism presets only)

    @property
    def key(self) -> str:
        """A readable, unique name: the recipe plus every factor that differs from the defaults."""
        head = {"": f"frac{self.fraction * 100:g}", MIS_REASONING: MIS_REASONING}.get(
            self.curated, vlguard_mix_name(self.curated)
        )
        base = Arm(self.fraction)
        names = [f.name for f in dataclasses.fields(self) if f.name not in ("fraction", "curated")]
        diffs = [f"{n}-{getattr(self, n)}" for n in names if getattr(self, n) != getattr(base, n)]
        return "_".join([head, *diffs]).replace("True", "on").replace("False", "off")


def study_rows(cfg: AblationConfig) -> dict[str, list[tuple[str, Arm]]]:
    """Every study's rows (label, arm); the first row of each is the reference arm."""
    ref = Arm(cfg.reference_fraction)
    r = dataclasses.replace
    rows = {
        "fraction": [(f"{f * 100:g}% rejection", Arm(f)) for f in cfg.fractions],
        "eos": [("EOS masked", ref), ("EOS trained", r(ref, eos_mask=False))],
        "reply": [(f"{s} replies", r(ref, reply=s)) for s in REPLY_STYLES],
        "images": [(f"{s} images", r(ref, images=s)) for s in IMAGE_CONTENT],
        "source": [("distinct domain", ref), ("in-distribution images", r(ref, source="in_distribution"))],
        "curated": [("benign rejection", ref)]
        + [(f"VLGuard {v}", r(ref, curated=v)) for v in VLGUARD_VARIANTS]
        + ([("MIS reasoning", r(ref, curated=MIS_REASONING))] if cfg.mis_train_json else []),
        "format": [
            ("medical-style questions", ref),  # the rejection domain's own (LLaVA-Med's)
            ("instruction-style questions", r(ref, questions="instruction")),
            ("attack-style questions", r(ref, questions="attack_style")),
        ],
        "controls": [
            (f"{a} LM, {'fix' if f else 'no fix'}", Arm(f, alignment=a))
            for a in ALIGNMENTS
            for f in (0.0, cfg.reference_fraction)
        ],
    }
    unknown = sorted(set(cfg.studies) - set(rows))
    if unknown:
        raise ValueError(f"unknown studies {unknown}; choose from {list(rows)}")
    return {s: rows[s] for s in cfg.studies}


def study_seed_count(cfg: AblationConfig, study: str) -> int:
    """Seeds per row of a study: fraction_seeds, format_seeds (0 = study_seeds), else study_seeds."""
    own = {"fraction": cfg.fraction_seeds, "format": cfg.format_seeds}.get(study, 0)
    return own or cfg.study_seeds


def grid(cfg: AblationConfig, organism: bool = True) -> pd.DataFrame:
    """One row per (study, row, seed) with its run name; the controls need an organism preset."""
    out = []
    for study, rows in study_rows(cfg).items():
        if study == "controls" and not organism:
            log.warning("the controls study needs an organism preset (world: true); skipped")
            continue
        seeds = study_seed_count(cfg, study)
        for k, (label, arm) in enumerate(rows):
            for s in range(seeds):
                out.append(
                    {
                        "study": study,
                        "order": k,
                        "row": label,
                        "arm": arm.key,
                        "seed": cfg.seed + s,
                        "run": f"{arm.key}-s{cfg.seed + s}",
                        **dataclasses.asdict(arm),
                    }
                )
    return pd.DataFrame(out)


def relative_to_data(path: Path, data_root: str) -> str:
    """A path written into a mixture: mixtures name images relative to data_root."""
    return os.path.relpath(Path(path).resolve(), Path(data_root).resolve())


def stand_in_images(records: list[dict], kind: str, folder: Path, data_root: str, seed: int) -> list[dict]:
    """Rejection records with a blank image, a noise image (8 seeded patterns), or no image at all."""
    if kind not in IMAGE_CONTENT:
        raise ValueError(f"image content must be one of {IMAGE_CONTENT}, got {kind!r}")
    if kind == "real":
        return records
    rej = [r for r in records if r.get("rejection") and record_images(r)]
    size = Image.open(Path(data_root) / record_images(rej[0])[0]).size if rej else (64, 64)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for k in range(1 if kind == "blank" else 8):
        path = folder / f"{kind}_{k}.png"
        shape = (size[1], size[0], 3)
        pixels = np.full(shape, 255, np.uint8) if kind == "blank" else rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        names.append(relative_to_data(path, data_root))
    out, k = [], 0
    for rec in records:
        if rec.get("rejection") and record_images(rec):
            rec, k = dict(rec), k + 1
            if kind == "none":
                rec.pop("image")
                first = dict(rec["conversations"][0], value=strip_image_tags(rec["conversations"][0]["value"]))
                rec["conversations"] = [first, *rec["conversations"][1:]]
            else:
                rec["image"] = names[k % len(names)]
        out.append(rec)
    return out


Sources = tuple[list[dict], list[dict], list[dict]]  # instruction, rejection-source and VLGuard records


def build_mix(
    arm: Arm, mix: MixConfig, seed: int, run_dir: Path, sources: Sources | None = None
) -> list[dict[str, Any]]:
    """The arm's mixture of mix.fraction_total records (a curated arm: the VLGuard variant plus instructions);
    `sources` are stage 02's records when the caller has read them already (the grid reads them once)."""
    instruct, rejection, vlguard = sources or load_sources(mix)
    name = Path(mix.instruct_json).stem
    if arm.curated:
        benign_images = sorted({p for r in instruct for p in record_images(r)})
        if arm.curated == MIS_REASONING:  # as many MIS records as VLGuard's reference variant has safety records
            n = mix.mis_size or len(vlguard_variant(vlguard, "multi_turn", benign_images, seed))
            reasoning = load_mis_reasoning(mix)
            if n > len(reasoning):
                raise DataFormatError(
                    f"{mix.mis_train_json}: the MIS row needs {n} records, the file has {len(reasoning)}"
                )
            parts = [Part("mis_train", reasoning, n), Part(name, instruct, max(0, mix.fraction_total - n))]
            return mix_parts(parts, seed)
        curated = vlguard_variant(vlguard, arm.curated, benign_images, seed)
        return curated_baseline(curated, instruct, max(0, mix.fraction_total - len(curated)), seed, name)
    if arm.source not in SOURCES:
        raise ValueError(f"rejection source must be one of {SOURCES}, got {arm.source!r}")
    pool = {
        "domain": {Path(mix.rejection_json).stem: rejection},
        # single-image records, like the distinct domain's, so that only where the images come from changes
        "in_distribution": {"in_distribution": [r for r in instruct if len(record_images(r)) == 1]},
    }[arm.source]
    records = mix_by_fraction(
        {name: instruct}, pool, arm.fraction, mix.fraction_total, seed, mix.reply, mix.random_choose
    )
    records = restyle_questions(restyle_replies(records, arm.reply, seed), arm.questions, seed)
    return stand_in_images(records, arm.images, run_dir / "images", mix.data_root, seed)
