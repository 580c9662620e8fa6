"""Content fingerprints of what a run is made from: a file, a folder (weights, an adapter), a value, a hub model.

A file's fingerprint is the SHA-256 of its bytes, read once: the digest is cached under the file's absolute path
and its stat stamp (size, mtime_ns, inode), as DVC's state database and git's index do, so a 14 GB weights folder
is hashed once and then costs a few stat calls. Any change of size, mtime or inode (a file replaced by a rename
keeps neither) hashes it again. A file modified in the last few seconds is hashed but never cached (git's "racily
clean" rule: a write in the same timestamp tick would not change the stamp). A folder's fingerprint is the hash of
its sorted (relative path, file digest) pairs; hidden files and folders (.cache/, lock files) are left out.

The cache is one JSON file, $MLLM_SAFETY_CACHE/digests.json (default ~/.cache/mllm_safety/): read once per call,
merged with what is on disk and replaced atomically when new digests were computed, so concurrent writers never
leave a torn file (at worst one's entries are lost, which costs a second hash, never a wrong digest).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .files import write_json

MISSING = "missing"  # the fingerprint of a path that does not exist
SETTLE_NS = 3 * 10**9  # a file younger than this may still be written: hashed, never cached
CACHE_ENV = "MLLM_SAFETY_CACHE"


def cache_path() -> Path:
    """The digest cache: $MLLM_SAFETY_CACHE/digests.json, else $XDG_CACHE_HOME (or ~/.cache)/mllm_safety/."""
    root = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mllm_safety"
    return Path(root) / "digests.json"


def hash_file(path: Path) -> str:
    """SHA-256 of a file's bytes, streamed (the one place that reads a file's content)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def stamp(st: os.stat_result) -> list[int]:
    """What the cache compares: size, modification time (ns) and inode."""
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def load_cache(path: Path) -> dict[str, list]:
    """The cache's entries {absolute path: [size, mtime_ns, inode, digest]}; an unreadable cache is empty."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def save_cache(path: Path, new: dict[str, list]) -> None:
    """Merge new entries into the cache on disk (entries of vanished files dropped) and replace it atomically."""
    merged = {k: v for k, v in load_cache(path).items() if os.path.exists(k)} | new
    try:
        write_json(path, merged, indent=None)
    except OSError:  # a read-only home: fingerprints still work, only slower
        pass


def file_digests(paths: Iterable[str | Path]) -> dict[str, str]:
    """{absolute path: SHA-256} of existing files, hashing only those whose stamp is not in the cache."""
    where = cache_path()
    cache, new, out = load_cache(where), {}, {}
    for p in paths:
        key = str(Path(p).resolve())
        before = os.stat(key)
        hit = cache.get(key)
        if isinstance(hit, list) and hit[:3] == stamp(before):
            out[key] = hit[3]
            continue
        out[key] = hash_file(Path(key))
        after = os.stat(key)
        if stamp(after) == stamp(before) and time.time_ns() - after.st_mtime_ns > SETTLE_NS:
            new[key] = [*stamp(after), out[key]]
    if new:
        save_cache(where, new)
    return out


def value_digest(value: Any) -> str:
    """SHA-256 of a JSON-ready value (keys sorted, so dict order does not matter)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def folder_files(folder: Path) -> list[Path]:
    """The folder's files, recursively and sorted, hidden files and folders left out (symlinks followed)."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in sorted(files) if not f.startswith(".")]
    return sorted(found)


def fingerprint(path: str | Path) -> str:
    """A file's digest, a folder's (over its sorted relative paths and file digests), or MISSING."""
    path = Path(path)
    if path.is_file():
        return next(iter(file_digests([path]).values()))
    if not path.is_dir():
        return MISSING
    files = folder_files(path)
    digests = file_digests(files)
    return value_digest([[f.relative_to(path).as_posix(), digests[str(f.resolve())]] for f in files])


def hub_fingerprint(repo_id: str) -> str:
    """A hub model's cached revision (its commit names its content), never asking the network; the id alone when
    it is not in the local cache."""
    try:
        from huggingface_hub import snapshot_download

        return f"hub:{repo_id}@{Path(snapshot_download(repo_id, local_files_only=True)).name}"
    except Exception:  # not cached, not a repo id, no hub library: nothing on disk to pin
        return f"hub:{repo_id}"


def source_fingerprint(source: str | Path) -> str:
    """The fingerprint of a model source: a local file or folder by content, else a hub id by its revision."""
    return fingerprint(source) if Path(source).exists() else hub_fingerprint(str(source))


def data_inputs(cfg: dict[str, Any]) -> dict[str, str]:
    """Fingerprints of the data files a stage config names under data_root: every `*_json` key and every
    bias_datasets entry. The images they point to are not hashed: raw data is read-only by convention."""
    root = Path(cfg.get("data_root", "."))
    named = {k: v for k, v in cfg.items() if k.endswith("_json") and isinstance(v, str) and v}
    named |= {f"bias_datasets/{k}": v for k, v in (cfg.get("bias_datasets") or {}).items()}
    return {k: fingerprint(root / v) for k, v in sorted(named.items())}


def short(fp: str | None) -> str:
    """A fingerprint as a log line shows it: 8 hex digits (hub ids and MISSING whole, None as 'none')."""
    if fp is None:
        return "none"
    return fp if fp == MISSING or fp.startswith("hub:") else fp[:8]


def input_change(old: dict[str, str], new: dict[str, str]) -> str:
    """One line naming every input whose fingerprint changed, old → new (short); "" when none did."""
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    parts = [f"{k} {short(old.get(k))} → {short(new.get(k))}" for k in changed]
    if not parts:
        return ""
    return ("input changed: " if len(parts) == 1 else "inputs changed: ") + ", ".join(parts)
