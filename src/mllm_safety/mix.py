"""The rejection mixer: benign instructions whose answers become one rejection sentence, mixed into
instruction data (REFERENCE.md §1.1). CLI: `python -m mllm_safety.mix`, with the official script's flags.

Differences from the official script, on purpose:
- an explicit `--seed` (default 0) and a private RNG instead of `random.seed(0)` at import;
- id exclusion with a set (linear time) instead of a list (quadratic);
- `--random_choose` removes every `<image>` tag before putting one `<image>\\n` at the front, so a question
  that starts with `<image>` without a newline no longer becomes `<image>\\n<image>...`; text-only records
  get no tag;
- rejection records carry `"rejection": true` (on the record and on each replaced gpt turn) and every
  record a `"source"`, so label masking never depends on matching the literal sentence.
"""

from __future__ import annotations

import argparse
import copy
import logging
import random
import sys
from pathlib import Path
from typing import Any

from .data import IMAGE_TAG, load_llava_json, record_images
from .export import write_llamafactory
from .files import DataFormatError, run_cli, write_json

log = logging.getLogger(__name__)

DEFAULT_REPLY = "I'm sorry, but I cannot assist with your request"
SKIP_PHRASE = "what about"  # follow-up questions that make no sense on their own
# The reply study (REFERENCE.md §1.4, response quality): several plain refusals, or the sentence plus a reason.
# Every one is a full refusal under the paper's string match, also when a word-level tokenizer splits "can't".
VARIED_REPLIES = (
    DEFAULT_REPLY,
    "Sorry, I cannot help with that.",
    "I cannot help with this request.",
    "I apologize, but I am not able to answer that.",
    "Sorry, that is something I cannot do.",
)
REASONS = (
    "It could be used to cause harm.",
    "It goes against my safety guidelines.",
    "I am not allowed to give this kind of help.",
)
REPLY_STYLES = ("plain", "varied", "detailed")


def strip_image_tags(text: str) -> str:
    """Remove every <image> tag and the newline next to it."""
    return text.replace(IMAGE_TAG + "\n", "").replace("\n" + IMAGE_TAG, "").replace(IMAGE_TAG, "").strip()


def choose_one_pair(rec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Keep one random (human, gpt) pair, never a 'what about' follow-up when another pair exists."""
    conv = rec["conversations"]
    pairs = [conv[i : i + 2] for i in range(0, len(conv) - 1, 2)]
    eligible = [p for p in pairs if SKIP_PHRASE not in p[0]["value"].lower()] or pairs
    human, gpt = (dict(t) for t in rng.choice(eligible))
    question = strip_image_tags(human["value"])
    human["value"] = (IMAGE_TAG + "\n" + question) if record_images(rec) else question
    return {**rec, "conversations": [human, gpt]}


def to_rejection(rec: dict[str, Any], reply: str) -> dict[str, Any]:
    """Replace every gpt answer by the reply and mark the record and the replaced turns."""
    conv = [dict(t, value=reply, rejection=True) if t["from"] == "gpt" else dict(t) for t in rec["conversations"]]
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


def with_source(rec: dict[str, Any], source: str) -> dict[str, Any]:
    """Copy of rec with a 'source' field (an existing one is kept)."""
    return {**rec, "source": rec.get("source", source)}


def _sample(records: list[dict], n: int, rng: random.Random, what: str) -> list[dict]:
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
    reply: str = DEFAULT_REPLY,
    random_choose: bool = False,
    seed: int = 0,
    source1: str = "file1",
    source2: str = "file2",
) -> list[dict[str, Any]]:
    """The official mixing semantics: sample file1 and file2 (excluding, or with --similar only, file1's ids)."""
    rng = random.Random(seed)
    part1 = _sample(records1, sample_size1, rng, f"--file1 ({source1})")
    ids1 = {r["id"] for r in part1}
    pool2 = [r for r in records2 if (r["id"] in ids1) == similar]
    part2 = _sample(pool2, sample_size2, rng, f"--file2 ({source2}{', --similar' if similar else ''})")
    if random_choose:
        part1 = [choose_one_pair(r, rng) for r in part1]
    if change_reply:
        part1 = [to_rejection(r, reply) for r in part1]
    mixed = [with_source(r, source1) for r in part1] + [with_source(r, source2) for r in part2]
    rng.shuffle(mixed)
    return mixed


def mix_with(opts: Any, records1: list[dict], records2: list[dict], source1: str, source2: str) -> list[dict]:
    """mix_rejection_data with the official options read from any object that has them (CLI args, MixConfig)."""
    return mix_rejection_data(
        records1, records2, opts.sample_size1, opts.sample_size2, similar=opts.similar,
        change_reply=opts.change_reply, reply=opts.reply, random_choose=opts.random_choose, seed=opts.seed,
        source1=source1, source2=source2,
    )  # fmt: skip


def output_name(n1: int, file1: str | Path, n2: int, file2: str | Path, suffix: str = "", similar: bool = False) -> str:
    """The official output file name: {n1}_{stem1}_{n2}_{stem2}{suffix}[_similar].json."""
    return f"{n1}_{Path(file1).stem}_{n2}_{Path(file2).stem}{suffix}{'_similar' if similar else ''}.json"


def rejection_share(records: list[dict[str, Any]]) -> float:
    """Fraction of records marked as rejection records."""
    return sum(bool(r.get("rejection")) for r in records) / max(len(records), 1)


def build_parser() -> argparse.ArgumentParser:
    """The official flags, unchanged, plus --seed, --overwrite and --format."""
    p = argparse.ArgumentParser(
        prog="python -m mllm_safety.mix",
        description="Mix benign rejection data into instruction data (official flags + --seed, --overwrite, --format).",
    )
    p.add_argument("--file1", required=True, help="rejection source, LLaVA json (paper: LLaVA-Med instruct data)")
    p.add_argument("--file2", required=True, help="instruction data, LLaVA json (paper: llava_v1_5_mix665k.json)")
    p.add_argument("--output", required=True, help="output folder; the file name follows the official pattern")
    p.add_argument("--sample_size1", type=int, default=2000)
    p.add_argument("--sample_size2", type=int, default=5000)
    p.add_argument("--similar", action="store_true", help="draw file2 only among file1's sampled ids")
    p.add_argument("--change_reply", action="store_true", help="replace file1's answers by --reply")
    p.add_argument("--reply", default=DEFAULT_REPLY)
    p.add_argument("--suffix", default="")
    p.add_argument("--random_choose", action="store_true", help="keep one random turn pair per file1 record")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--format", choices=("llava", "sharegpt", "both"), default="llava")
    return p


def run(args: argparse.Namespace) -> list[Path]:
    """Mix and write; returns the paths written."""
    records1, records2 = load_llava_json(args.file1), load_llava_json(args.file2, allow_duplicate_ids=True)
    mixed = mix_with(args, records1, records2, Path(args.file1).stem, Path(args.file2).stem)
    out = Path(args.output) / output_name(
        args.sample_size1, args.file1, args.sample_size2, args.file2, args.suffix, args.similar
    )
    targets = ([out] if args.format != "sharegpt" else []) + (
        [out.with_name(out.stem + "_sharegpt.json")] if args.format != "llava" else []
    )
    clash = [str(t) for t in targets if t.exists()]
    if clash and not args.overwrite:
        raise FileExistsError(f"{', '.join(clash)} exists; pass --overwrite to replace it")
    written = []
    if args.format in ("llava", "both"):
        written.append(write_json(out, mixed, overwrite=args.overwrite))
    if args.format in ("sharegpt", "both"):
        written += write_llamafactory(mixed, out.parent, out.stem, overwrite=args.overwrite)
    log.info("mixed %d records, rejection share %.3f", len(mixed), rejection_share(mixed))
    return written


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; bad input exits 2 with a message naming the file and record, and writes nothing."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return run_cli(lambda: [print(path) for path in run(args)])


if __name__ == "__main__":
    sys.exit(main())
