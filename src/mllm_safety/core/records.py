"""Loaders for the real training-data formats: LLaVA json and VLGuard json (docs/protocol.md §4).

Every loader validates what later stages rely on and raises DataFormatError naming the file, the record
(index and id) and the fix. Benchmarks (MM-SafetyBench, FigStep, XSTest, VLGuard test) live in
`core.benchmarks`; `mllm_safety.data` is the public face of both.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Literal

from .files import DataFormatError, drop_or_fail, read_json, record_error
from .vocabulary import IMAGE_TAG, record_images

log = logging.getLogger(__name__)

ROLES = ("human", "gpt")
Policy = Literal["fail", "skip"]


def _turn_problem(rec: dict[str, Any]) -> str | None:
    conv = rec.get("conversations")
    if not isinstance(conv, list) or not conv:
        return "missing or empty 'conversations' list"
    for t, turn in enumerate(conv):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            return f"turn {t} lacks 'from' or 'value'"
        if not isinstance(turn["value"], str):
            return f"turn {t}: 'value' is not a string"
        if turn["from"] != ROLES[t % 2]:
            return f"turn {t} is from {turn['from']!r}, expected {ROLES[t % 2]!r} (turns must alternate human/gpt)"
    if len(conv) % 2:
        return "the last turn is from 'human': every question needs a 'gpt' answer"
    tags = sum(turn["value"].count(IMAGE_TAG) for turn in conv)
    n_img = len(record_images(rec))
    if tags != n_img:
        return f"{tags} '<image>' tag(s) in the conversation but {n_img} image(s) in the 'image' field"
    return None


def validate_llava_record(rec: Any, path: str | Path, index: int) -> None:
    """Raise DataFormatError if one LLaVA json record breaks the schema."""
    if not isinstance(rec, dict):
        raise record_error(path, index, None, f"expected an object, got {type(rec).__name__}")
    if "id" not in rec:
        raise record_error(path, index, None, "missing 'id'", "give every record a unique id")
    if isinstance(rec["id"], bool) or not isinstance(rec["id"], str | int):
        raise record_error(path, index, None, f"'id' is {type(rec['id']).__name__}", "use a string or an integer")
    img = rec.get("image")
    if img is not None and not (
        isinstance(img, str) or (isinstance(img, list) and all(isinstance(i, str) for i in img))
    ):
        raise record_error(path, index, rec["id"], "'image' must be a path or a list of paths")
    problem = _turn_problem(rec)
    if problem:
        raise record_error(path, index, rec["id"], problem, "repair or remove this record")


def check_duplicate_ids(records: list[dict[str, Any]], path: str | Path) -> None:
    """Raise DataFormatError on the first id that occurs twice."""
    seen: dict[Any, int] = {}
    for i, rec in enumerate(records):
        key = rec.get("id")
        if key in seen:
            raise record_error(path, i, key, f"duplicate id (first at record {seen[key]})", "make ids unique")
        seen[key] = i


def check_images(
    records: list[dict[str, Any]], image_root: str | Path, path: str | Path, missing: Policy = "fail"
) -> list[dict[str, Any]]:
    """Check that every referenced image exists under image_root; fail, or skip the records that lack one."""
    root = Path(image_root)
    bad = [i for i, r in enumerate(records) if any(not (root / p).is_file() for p in record_images(r))]
    first = ", ".join(f"record {i} (id={records[i]['id']!r})" for i in bad[:5])
    msg = f"{path}: {len(bad)} record(s) reference images missing under {root}; first: {first}"
    return drop_or_fail(records, bad, msg, "correct image_root, or pass missing_images='skip'", missing)


def validate_llava(
    data: Any, path: str | Path, invalid: Policy = "fail", allow_duplicate_ids: bool = False
) -> list[dict[str, Any]]:
    """Validate already-parsed LLaVA json; invalid records fail, or are skipped with a warning."""
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: top level is {type(data).__name__}, expected a list of records (LLaVA json)")
    records = []
    for i, rec in enumerate(data):
        try:
            validate_llava_record(rec, path, i)
        except DataFormatError as e:
            if invalid == "fail":
                raise
            log.warning("skipping invalid record: %s", e)
            continue
        records.append(rec)
    if not allow_duplicate_ids:
        check_duplicate_ids(records, path)
    return records


def load_llava_json(
    path: str | Path,
    image_root: str | Path | None = None,
    missing_images: Policy = "fail",
    invalid: Policy = "fail",
    allow_duplicate_ids: bool = False,
) -> list[dict[str, Any]]:
    """Load and validate a LLaVA json file (mix665k, LLaVA-Med, converted VLGuard); extra fields are kept."""
    records = validate_llava(read_json(path), path, invalid, allow_duplicate_ids)
    if image_root is not None:
        records = check_images(records, image_root, path, missing_images)
    return records


def _check_vlguard_record(rec: Any, path: str | Path, i: int) -> None:
    if not isinstance(rec, dict):
        raise record_error(path, i, None, f"expected an object, got {type(rec).__name__}")
    for key in ("id", "image", "safe", "instr-resp"):
        if key not in rec:
            raise record_error(
                path, i, rec.get("id"), f"missing {key!r}", "VLGuard records need id, image, safe, instr-resp"
            )
    pairs = rec["instr-resp"]
    if not isinstance(pairs, list) or not pairs:
        raise record_error(path, i, rec["id"], "'instr-resp' must be a non-empty list")
    allowed = ("safe_instruction", "unsafe_instruction") if rec["safe"] else ("instruction",)
    for k, pair in enumerate(pairs):
        if not isinstance(pair, dict):
            raise record_error(path, i, rec["id"], f"instr-resp[{k}] is {type(pair).__name__}, expected an object")
        if "response" not in pair or not any(a in pair for a in allowed):
            raise record_error(path, i, rec["id"], f"instr-resp[{k}] needs 'response' and one of {allowed}")


def unique_ids(records: list[dict[str, Any]], path: str | Path, key: str = "id") -> list[dict[str, Any]]:
    """Records whose repeated ids become unique and stable: the k-th repeat of `x` is `x#k` (k >= 2, in file
    order), the original kept as `original_id`. Real files repeat ids (VLGuard's train.json has two records for
    the image Ads_303871 with different instructions); every record is kept."""
    seen: dict[str, int] = {}
    out, renamed = [], 0
    for rec in records:
        rid = str(rec[key])
        seen[rid] = seen.get(rid, 0) + 1
        if seen[rid] > 1:
            rec, renamed = {**rec, key: f"{rid}#{seen[rid]}", "original_id": rec[key]}, renamed + 1
        out.append(rec)
    if renamed:
        log.info("%s: %d record(s) repeat an earlier id; kept as <id>#<k>", path, renamed)
    return out


def validate_vlguard(data: Any, path: str | Path) -> list[dict[str, Any]]:
    """Validate already-parsed VLGuard json; repeated ids are made unique (`unique_ids`)."""
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: top level is {type(data).__name__}, expected a list (VLGuard json)")
    for i, rec in enumerate(data):
        _check_vlguard_record(rec, path, i)
    return unique_ids(data, path)


def load_vlguard(path: str | Path, image_root: str | Path | None = None, missing_images: Policy = "fail") -> list[dict]:
    """Load VLGuard train/test json (a list of {id, image, safe, harmful_category, instr-resp})."""
    data = validate_vlguard(read_json(path), path)
    if image_root is not None:
        data = check_images(data, image_root, path, missing_images)
    return data


def prefix_images(records: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """Copies of LLaVA or VLGuard records whose image paths start with prefix (a folder under data_root)."""
    if not prefix:
        return records
    out = []
    for rec in records:
        img = rec.get("image")
        if img is not None:
            paths = [prefix + p for p in record_images(rec)]
            rec = {**rec, "image": paths[0] if isinstance(img, str) else paths}
        out.append(rec)
    return out


PAIR_KINDS = (("instruction", "unsafe"), ("safe_instruction", "safe_safe"), ("unsafe_instruction", "safe_unsafe"))


def pair_kind(pair: dict[str, Any]) -> tuple[str, str]:
    """(kind, instruction) of one VLGuard instr-resp pair; kind is unsafe, safe_safe or safe_unsafe."""
    for key, kind in PAIR_KINDS:
        if key in pair:
            return kind, pair[key]
    raise KeyError(f"instr-resp pair without an instruction key: {sorted(pair)}")


def vlguard_to_llava(records: list[dict[str, Any]], seed: int | None = 0) -> list[dict[str, Any]]:
    """Convert VLGuard records to LLaVA json: one record per image, its pairs as consecutive turns.

    As VLGuard's own converter does, the two pairs of a safe image (safe and unsafe instruction) are shuffled
    with one generator seeded once (`seed`, 0 as theirs; None keeps file order). A pair marked
    "rejection": true (see vlguard.plain_refusals) marks its gpt turn and the record.
    """
    rng = random.Random(seed) if seed is not None else None
    out = []
    for rec in records:
        conv, pairs = [], list(rec["instr-resp"])
        if rng is not None and len(pairs) == 2:
            rng.shuffle(pairs)
        for t, pair in enumerate(pairs):
            _kind, question = pair_kind(pair)
            conv.append({"from": "human", "value": (IMAGE_TAG + "\n" if t == 0 else "") + question})
            answer = {"from": "gpt", "value": pair["response"]}
            if pair.get("rejection"):
                answer["rejection"] = True
            conv.append(answer)
        new = {"id": str(rec["id"]), "image": rec["image"], "conversations": conv}
        new.update({k: rec[k] for k in ("safe", "harmful_category", "harmful_subcategory") if k in rec})
        new["source"] = rec.get("source", "vlguard")
        if any(turn.get("rejection") for turn in conv):
            new["rejection"] = True
        out.append(new)
    return out


def load_training_records(path: str | Path) -> list[dict[str, Any]]:
    """LLaVA json as is, or VLGuard json converted to LLaVA json (detected by its 'instr-resp' field)."""
    data = read_json(path)
    if isinstance(data, list) and data and isinstance(data[0], dict) and "instr-resp" in data[0]:
        return vlguard_to_llava(validate_vlguard(data, path))
    return validate_llava(data, path, allow_duplicate_ids=True)
