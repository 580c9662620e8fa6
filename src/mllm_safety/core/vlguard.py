"""The VLGuard ablations of the paper (docs/protocol.md §1.4): multi-turn vs single-turn, safe-safe pairs removed
(contrastive behaviour), harmful images replaced by random benign ones (image content), detailed refusals replaced
by the plain sentence (response quality). Transforms take VLGuard records and return new ones.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from .records import pair_kind, vlguard_to_llava
from .vocabulary import DEFAULT_REPLY, IMAGE_TAG, strip_image_tags


def split_single_turn(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Multi-turn -> single-turn: every (human, gpt) pair becomes a record of its own with the image tag."""
    out = []
    for rec in records:
        conv = rec["conversations"]
        for k in range(0, len(conv) - 1, 2):
            human = dict(conv[k], value=IMAGE_TAG + "\n" + strip_image_tags(conv[k]["value"]))
            gpt = dict(conv[k + 1])
            new = {**copy.deepcopy(rec), "id": f"{rec['id']}_t{k // 2}", "conversations": [human, gpt]}
            new.pop("rejection", None)
            if gpt.get("rejection"):
                new["rejection"] = True
            out.append(new)
    return out


def drop_safe_safe(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Remove the safe instruction on safe images (kills the contrastive safe/unsafe pairs)."""
    out = []
    for rec in records:
        pairs = [p for p in rec["instr-resp"] if pair_kind(p)[0] != "safe_safe"]
        if pairs:
            out.append({**copy.deepcopy(rec), "instr-resp": copy.deepcopy(pairs)})
    return out


def replace_harmful_images(records: list[dict[str, Any]], benign_images: list[str], seed: int = 0) -> list[dict]:
    """Give every unsafe image's record a random benign image instead (does image content matter?)."""
    rng = random.Random(seed)
    out = copy.deepcopy(records)
    for rec in out:
        if not rec["safe"]:
            rec["image"] = rng.choice(benign_images)
            rec["image_replaced"] = True
    return out


def plain_refusals(records: list[dict[str, Any]], reply: str = DEFAULT_REPLY) -> list[dict[str, Any]]:
    """Replace the detailed refusals (answers to harmful instructions) by the plain sentence."""
    out = copy.deepcopy(records)
    for rec in out:
        for pair in rec["instr-resp"]:
            if pair_kind(pair)[0] != "safe_safe":
                pair["response"], pair["rejection"] = reply, True
    return out


VLGUARD_VARIANTS = ("multi_turn", "single_turn", "no_safe_safe", "random_images", "plain_refusals")


def vlguard_variant(records: list[dict], variant: str, benign_images: list[str], seed: int = 0) -> list[dict]:
    """The curated data (LLaVA json) in one of the ablation variants; 'multi_turn' is the reference."""
    transforms = {
        "multi_turn": lambda r: r,
        "single_turn": lambda r: r,
        "no_safe_safe": drop_safe_safe,
        "random_images": lambda r: replace_harmful_images(r, benign_images, seed),
        "plain_refusals": plain_refusals,
    }
    if variant not in transforms:
        raise ValueError(f"unknown VLGuard variant {variant!r}; choose one of {VLGUARD_VARIANTS}")
    llava = vlguard_to_llava(transforms[variant](records), seed)
    return split_single_turn(llava) if variant == "single_turn" else llava
