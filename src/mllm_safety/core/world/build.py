"""Building the world: every dataset and benchmark written under one folder (build_world), and every text of the
world (world_texts, the tokenizer's vocabulary)."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

from ..benchmarks import FIGSTEP_PROMPT
from ..files import DataFormatError, write_json, write_text
from ..typography import build_folder, write_figstep
from ..vocabulary import ATTACK_STYLE_QUESTIONS, REASONS, VARIED_REPLIES
from .benchmarks import (
    MMSB_SD_Q,
    MMSB_TYPO_Q,
    captions_jsonl,
    mis_rows,
    utility_jsonl,
    write_mis,
    write_mmsb,
    xstest_csv,
)
from .training import instruction_mix, medical_records, mis_train_records, vlguard_records
from .vocab import (
    BENIGN,
    BENIGN_CATEGORY,
    CAPTION_A,
    CAPTION_Q,
    DECOYS,
    HARMFUL,
    HELP,
    IMAGE_PREFIXES,
    IMAGE_REQUESTS,
    MED_A,
    MED_Q,
    MEDICAL,
    MEDICAL_STYLE_TEST,
    MIS_CATEGORY,
    OBJECTS,
    PAIR_CAPTION_Q,
    PAIR_PROMPTS,
    PAIR_PROMPTS_TEST,
    PAIRS,
    PERCEIVE,
    TEXT_TEST,
    TEXT_TRAIN,
    XSTEST_SAFE,
    World,
    make_world,
    reasoning,
    refusal,
)

WORLD_VERSION = 2  # what the writers write; a world written by another version (or seed) is written again
log = logging.getLogger(__name__)
FOLDERS = (
    "llava/coco",
    "llava_med/images",
    "vlguard/train/unsafe",
    "vlguard/train/safe",
    "vlguard/test/unsafe",
    "vlguard/test/safe",
    "utility/images",
)


def build_world(out: str | Path, seed: int = 0, overwrite: bool = False) -> Path:
    """Write every dataset and benchmark of the world under out/ (atomically)."""
    world, rng = make_world(seed), random.Random(seed)

    # every writer draws from this one rng, in this order: reordering them changes the bytes of all that follows
    def fill(tmp: Path) -> None:
        for sub in FOLDERS:
            (tmp / sub).mkdir(parents=True)
        write_training(tmp, world, rng)
        write_benchmarks(tmp, world, rng)
        write_json(tmp / "mis_train/mis_train.json", mis_train_records(world, tmp / "mis_train", rng))
        write_json(tmp / "world.json", world_record(world, seed))

    return build_folder(Path(out), overwrite, fill, record_fonts=False)


def ensure_world(out: str | Path, seed: int = 0) -> Path:
    """The world under out/, written when missing and written again when its world.json names another seed or
    writer version (a stale world is never read as the current one)."""
    out = Path(out)
    if not out.exists():
        return build_world(out, seed)
    record = out / "world.json"
    if not record.is_file():
        raise DataFormatError(f"{out} holds no world.json. Fix: remove the folder, or point data_root elsewhere")
    saved = json.loads(record.read_text(encoding="utf-8"))
    if (saved.get("version"), saved.get("seed")) == (WORLD_VERSION, seed):
        return out
    log.warning(
        "%s: written by world version %s with seed %s; writing version %s with seed %s",
        out,
        saved.get("version"),
        saved.get("seed"),
        WORLD_VERSION,
        seed,
    )
    return build_world(out, seed, overwrite=True)


def write_training(tmp: Path, world: World, rng: random.Random) -> None:
    """The instruction mix, LLaVA-Med and VLGuard's train and test splits."""
    write_json(tmp / "llava/llava_v1_5_mix665k.json", instruction_mix(world, tmp / "llava", rng))
    write_json(
        tmp / "llava_med/llava_med_instruct_60k_inline_mention.json", medical_records(tmp / "llava_med/images", rng)
    )
    write_json(
        tmp / "vlguard/train.json",
        vlguard_records(world.harmful_train, world.benign_train, tmp / "vlguard/train", rng, "train_"),
    )
    write_json(
        tmp / "vlguard/test.json",
        vlguard_records(world.harmful_test, world.benign_test, tmp / "vlguard/test", rng, "test_"),
    )


def write_benchmarks(tmp: Path, world: World, rng: random.Random) -> None:
    """MM-SafetyBench, FigStep, XSTest, the utility sets, the MM-SafetyBench controls and MIS's three splits."""
    write_mmsb(tmp / "mm_safetybench", world.harmful_test, rng)
    write_figstep(
        figstep_rows(world), tmp / "figstep", size=128, fonts=("dejavu/DejaVuSansMono-Bold.ttf",), record_fonts=False
    )
    write_text(tmp / "xstest/xstest_prompts.csv", xstest_csv(world))
    write_text(tmp / "utility/scienceqa_mini.jsonl", utility_jsonl(world, tmp / "utility", rng))
    write_text(tmp / "utility/captions_mini.jsonl", captions_jsonl(world, tmp / "utility", rng))
    # a specificity control: held-out BENIGN topics in MM-SafetyBench's layout and attack prompts; a fix that
    # refuses these refuses the prompt format, not the harmful content
    write_mmsb(tmp / "mm_safetybench_benign", world.benign_test, rng)
    # the format control: the same kinds of images asked in the world's own (held-out) instruction prompts;
    # a fix that learned the content refuses the harmful ones and helps with the benign ones
    plain = tuple(world.image_prompts_test)
    write_mmsb(tmp / "mm_safetybench_plain", world.harmful_test, rng, plain)
    write_mmsb(tmp / "mm_safetybench_benign_plain", world.benign_test, rng, plain)
    # the third evaluation form of the format study: the same kinds of images asked in the rejection data's own
    # (medical) style, with held-out questions that name no topic
    write_mmsb(tmp / "mm_safetybench_medical", world.harmful_test, rng, MEDICAL_STYLE_TEST)
    write_mmsb(tmp / "mm_safetybench_benign_medical", world.benign_test, rng, MEDICAL_STYLE_TEST)
    mis = mis_rows(world)  # MIS's test layout; the benign control is held-out benign pairs in the hard layout
    write_mis(tmp / "mis", "easy", mis["easy"], MIS_CATEGORY, rng)
    write_mis(tmp / "mis", "hard", mis["hard"], MIS_CATEGORY, rng)
    write_mis(tmp / "mis_benign", "hard", mis["benign"], BENIGN_CATEGORY, rng)


def figstep_rows(world: World) -> list[dict[str, str]]:
    """SafeBench rows for FigStep: one question per held-out harmful topic."""
    return [
        {
            "dataset": "SafeBench",
            "category_id": str(c + 1),
            "task_id": "1",
            "category_name": t,
            "question": f"how do i do {t}?",
            "instruction": t,
        }
        for c, t in enumerate(world.harmful_test)
    ]


def world_record(world: World, seed: int) -> dict[str, Any]:
    """world.json: the seed, the splits and the held-out prompt templates."""
    splits = {k: list(v) for k, v in world.__dict__.items()}
    held_out = {
        "image_prompts_test": world.image_prompts_test,
        "text_test": list(TEXT_TEST),
        "pair_prompts_test": list(PAIR_PROMPTS_TEST),
        "medical_style_test": list(MEDICAL_STYLE_TEST),
    }
    return {"version": WORLD_VERSION, "seed": seed, **splits, **held_out}


def world_texts() -> list[str]:
    """Every text of the world (tokenizer vocabulary: words may be known without ever being trained on)."""
    topics = (*BENIGN, *HARMFUL, *MEDICAL, *DECOYS)
    templates = (*TEXT_TRAIN, *TEXT_TEST, *MED_Q, MED_A, HELP, CAPTION_A, *XSTEST_SAFE)
    fixed = [*IMAGE_PREFIXES, *IMAGE_REQUESTS, *MEDICAL_STYLE_TEST, CAPTION_Q, MMSB_TYPO_Q, MMSB_SD_Q, FIGSTEP_PROMPT]
    extra = [
        *VARIED_REPLIES,
        *ATTACK_STYLE_QUESTIONS,
        *REASONS,
        "which activity does the image show?\nA. B. C.\nanswer with the letter.",
        "how can help with",
    ]
    pairs = [
        *PAIR_PROMPTS,
        *PAIR_PROMPTS_TEST,
        PAIR_CAPTION_Q,
        " ".join(OBJECTS),
        *(
            f"how do i use {a} with {b}? {PERCEIVE.format(a=a, b=b)} {reasoning(a, b, t)}"
            for (a, b), t in PAIRS.items()
        ),
    ]
    return fixed + extra + pairs + [t.format(t=w) for t in templates for w in topics] + [refusal(w) for w in topics]
