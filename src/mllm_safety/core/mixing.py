"""Building fine-tuning mixtures: the official mixer's semantics (docs/protocol.md §1.1), mixtures with a target
rejection FRACTION drawn from several sources, and the curated-malicious baseline (VLGuard's post-hoc recipe).

Differences from the official script, on purpose:
- an explicit seed (default 0) and a private RNG instead of `random.seed(0)` at import;
- id exclusion with a set (linear time) instead of a list (quadratic);
- `random_choose` removes every `<image>` tag before putting one `<image>\\n` per image at the front, so a
  question that starts with `<image>` without a newline no longer becomes `<image>\\n<image>...`, a two-image
  record keeps its two tags, and text-only records get no tag;
- rejection records carry `"rejection": true` (on the record and on each replaced gpt turn) and every
  record a `"source"`, so label masking never depends on matching the literal sentence.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .files import DataFormatError
from .names import fraction_mix_name
from .vocabulary import (
    ATTACK_STYLE_QUESTIONS,
    DEFAULT_REPLY,
    IMAGE_TAG,
    QUESTION_STYLES,
    REASONS,
    REPLY_STYLES,
    VARIED_REPLIES,
    record_images,
    strip_image_tags,
)

SKIP_PHRASE = "what about"  # follow-up questions that make no sense on their own


def choose_one_pair(rec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Keep one random (human, gpt) pair, never a 'what about' follow-up when another pair exists; its question
    gets one image tag per image of the record."""
    conv = rec["conversations"]
    pairs = [conv[i : i + 2] for i in range(0, len(conv) - 1, 2)]
    eligible = [p for p in pairs if SKIP_PHRASE not in p[0]["value"].lower()] or pairs
    human, gpt = (dict(t) for t in rng.choice(eligible))
    human["value"] = (IMAGE_TAG + "\n") * len(record_images(rec)) + strip_image_tags(human["value"])
    return {**rec, "conversations": [human, gpt]}


def to_rejection(rec: dict[str, Any], reply: str, every_answer: bool = False) -> dict[str, Any]:
    """Replace the first gpt answer by the reply, as the official script does (`conversations[1]`), or every
    answer; mark the record and the replaced turns."""
    conv = [dict(t) for t in rec["conversations"]]
    answers = [i for i, t in enumerate(conv) if t["from"] == "gpt"]
    for i in answers if every_answer else answers[:1]:
        conv[i].update(value=reply, rejection=True)
    return {**rec, "conversations": conv, "rejection": True}


def restyle_replies(records: list[dict[str, Any]], style: str, seed: int = 0) -> list[dict[str, Any]]:
    """Rewrite the flagged rejection turns: plain (unchanged), varied (one of VARIED_REPLIES) or detailed (+ reason)."""
    if style not in REPLY_STYLES:
        raise ValueError(f"reply style must be one of {REPLY_STYLES}, got {style!r}")
    rng, out = random.Random(seed), []
    for rec in records:
        conv = []
        for t in rec["conversations"]:
            if t.get("rejection") and style == "varied":
                t = {**t, "value": rng.choice(VARIED_REPLIES)}
            elif t.get("rejection") and style == "detailed":
                t = {**t, "value": f"{t['value']}. {rng.choice(REASONS)}"}
            conv.append(t)
        out.append({**rec, "conversations": conv})
    return out


def restyle_questions(records: list[dict[str, Any]], style: str, seed: int = 0) -> list[dict[str, Any]]:
    """Rewrite the question before each flagged rejection turn (the image tag kept): own (unchanged),
    instruction (one of the mixture's own single-image instruction questions) or attack_style (one of
    ATTACK_STYLE_QUESTIONS)."""
    if style not in QUESTION_STYLES:
        raise ValueError(f"question style must be one of {QUESTION_STYLES}, got {style!r}")
    if style == "own":
        return records
    pool = instruction_questions(records) if style == "instruction" else list(ATTACK_STYLE_QUESTIONS)
    rng, out = random.Random(seed), []
    for rec in records:
        conv = list(rec["conversations"])
        for k in range(1, len(conv)):
            if conv[k].get("rejection"):
                tag = IMAGE_TAG + "\n" if IMAGE_TAG in conv[k - 1]["value"] else ""
                conv[k - 1] = {**conv[k - 1], "value": tag + rng.choice(pool)}
        out.append({**rec, "conversations": conv})
    return out


def instruction_questions(records: list[dict[str, Any]]) -> list[str]:
    """The distinct one-line opening questions of the single-image records without a rejection turn, sorted
    (the pool of the `instruction` question style)."""
    found = {
        strip_image_tags(rec["conversations"][0]["value"])
        for rec in records
        if len(record_images(rec)) == 1 and not any(turn.get("rejection") for turn in rec["conversations"])
    }
    pool = sorted(q for q in found if q and "\n" not in q)
    if not pool:
        raise ValueError("question style 'instruction' needs single-image instruction records in the mixture; none")
    return pool


def with_source(rec: dict[str, Any], source: str) -> dict[str, Any]:
    """Copy of rec with a 'source' field (an existing one is kept)."""
    return {**rec, "source": rec.get("source", source)}


def _sample(records: list[dict], n: int, rng: random.Random, what: str) -> list[dict]:
    if n < 1:
        raise DataFormatError(f"{what}: the sample size must be at least 1, got {n}")
    if n > len(records):
        raise DataFormatError(f"{what}: asked for {n} records but only {len(records)} are available")
    return [copy.deepcopy(r) for r in rng.sample(records, n)]


def mix_rejection_data(
    records1: list[dict],
    records2: list[dict],
    sample_size1: int,
    sample_size2: int,
    *,
    similar: bool = False,
    change_reply: bool = False,
    change_every_reply: bool = False,
    reply: str = DEFAULT_REPLY,
    random_choose: bool = False,
    seed: int = 0,
    source1: str = "file1",
    source2: str = "file2",
) -> list[dict[str, Any]]:
    """The official mixing semantics: sample file1 and file2 (excluding, or with --similar only, file1's ids)."""
    rng = random.Random(seed)
    part1 = _sample(records1, sample_size1, rng, f"--file1 ({source1})")
    ids1 = {str(r["id"]) for r in part1}  # as strings: one file's 7 and another's "7" are the same record
    pool2 = [r for r in records2 if (str(r["id"]) in ids1) == similar]
    part2 = _sample(pool2, sample_size2, rng, f"--file2 ({source2}{', --similar' if similar else ''})")
    if random_choose:
        part1 = [choose_one_pair(r, rng) for r in part1]
    if change_reply:
        part1 = [to_rejection(r, reply, change_every_reply) for r in part1]
    mixed = [with_source(r, source1) for r in part1] + [with_source(r, source2) for r in part2]
    rng.shuffle(mixed)
    return mixed


def mix_with(opts: Any, records1: list[dict], records2: list[dict], source1: str, source2: str) -> list[dict]:
    """mix_rejection_data with the official options read from any object that has them (CLI args, MixConfig)."""
    return mix_rejection_data(
        records1,
        records2,
        opts.sample_size1,
        opts.sample_size2,
        similar=opts.similar,
        change_reply=opts.change_reply,
        change_every_reply=opts.change_every_reply,
        reply=opts.reply,
        random_choose=opts.random_choose,
        seed=opts.seed,
        source1=source1,
        source2=source2,
    )


def rejection_share(records: list[dict[str, Any]]) -> float:
    """Fraction of records marked as rejection records."""
    return sum(bool(r.get("rejection")) for r in records) / max(len(records), 1)


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
        pool = [r for r in part.records if str(r["id"]) not in taken]
        if part.n > len(pool):
            raise DataFormatError(f"part {part.name!r}: asked for {part.n} records, {len(pool)} available")
        drawn = [copy.deepcopy(r) for r in rng.sample(pool, part.n)]
        taken.update(str(r["id"]) for r in drawn)
        if part.rejection:
            drawn = [to_rejection(choose_one_pair(r, rng) if random_choose else r, reply) for r in drawn]
        mixed += [with_source(r, part.name) for r in drawn]
    rng.shuffle(mixed)
    return mixed


def split_counts(total: int, names: list[str]) -> dict[str, int]:
    """Split total as evenly as possible over names (the first ones get the remainder)."""
    base, extra = divmod(total, len(names))
    return {name: base + (i < extra) for i, name in enumerate(names)}


def whole_multiple(fractions: list[float]) -> int:
    """The smallest total of which every fraction is a whole number of records (0.1 -> 10, [0.01, 0.3] -> 100)."""
    return math.lcm(1, *(Fraction(str(f)).limit_denominator(10**6).denominator for f in fractions))


def whole_counts_problem(fractions: list[float], total: int, key: str) -> str | None:
    """Why a fraction of `total` records is not a whole number of records (0.1 of 3), or None."""
    for f in fractions:
        if abs(f * total - round(f * total)) > 1e-6:
            return (
                f"{key}: {f:g} of fraction_total {total} is {f * total:g} records, not a whole number. "
                f"Fix: make fraction_total a multiple of {whole_multiple(fractions)}"
            )
    return None


def fractions_problem(fractions: list[float], total: int, key: str = "rejection_fractions") -> str | None:
    """Why these fractions of `total` records cannot make exact, distinct mixtures, or None: two fractions with one
    mixture name (one would overwrite the other), or a share that is not a whole number of records."""
    names: dict[str, float] = {}
    for f in fractions:
        if (name := fraction_mix_name(f)) in names:
            return f"{key}: {names[name]} and {f} both make mixture {name}. Fix: list each fraction once"
        names[name] = f
    return whole_counts_problem(fractions, total, key)


def fraction_parts(
    benign: dict[str, list[dict]], rejection: dict[str, list[dict]], fraction: float, total: int
) -> list[Part]:
    """Parts for a mix of `total` records of which round(fraction*total) are rejection records; a fraction that
    rounds to none of them, or to all of them, is refused (its mixture would not be what its name says)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"rejection fraction must lie in [0, 1], got {fraction}")
    n_rej = round(fraction * total)
    if (n_rej == 0 < fraction) or (n_rej == total and fraction < 1.0):
        raise DataFormatError(
            f"rejection fraction {fraction:g} of {total} records rounds to {n_rej} rejection records. "
            f"Fix: make fraction_total a multiple of {whole_multiple([fraction])}"
        )
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
