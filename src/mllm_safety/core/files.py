"""Small file helpers shared by every stage: clear data errors, atomic writes, JSON reading."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


class DataFormatError(ValueError):
    """Bad input data; the message names the file, the record and what to do."""


def drop_or_fail(rows: list, bad: list[int], message: str, fix: str, policy: str = "fail") -> list:
    """Raise `message` (with its fix) when bad rows exist and policy is 'fail'; otherwise drop them with a warning."""
    if not bad:
        return rows
    if policy == "fail":
        raise DataFormatError(f"{message}. Fix: {fix}")
    logging.getLogger(__name__).warning("%s; skipping them", message)
    drop = set(bad)
    return [r for i, r in enumerate(rows) if i not in drop]


def record_error(path: str | Path, index: int | None, rec_id: Any, problem: str, fix: str = "") -> DataFormatError:
    """Build a DataFormatError that names the file, the record (index and id) and the fix."""
    where = f"{path}"
    if index is not None:
        where += f": record {index}"
        if rec_id is not None:
            where += f" (id={rec_id!r})"
    msg = f"{where}: {problem}"
    return DataFormatError(msg + (f". Fix: {fix}" if fix else ""))


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file's content; a missing file, a folder or another encoding is a DataFormatError naming it."""
    path = Path(path)
    if path.is_dir():
        raise DataFormatError(f"{path}: is a folder, not a {what}. Fix: name the file inside it")
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found. Fix: check the path (and data_root in the preset)")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataFormatError(
            f"{path}: not UTF-8 text (byte {e.start}: {e.reason}). Fix: convert it to UTF-8 (e.g. iconv -t UTF-8)"
        ) from None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_json(path: str | Path) -> Any:
    """Read a JSON file: a missing file, a folder, another encoding, a syntax error or NaN/Infinity (not JSON,
    though Python writes them) is a DataFormatError naming the file and the place."""
    text = read_text(path, "JSON file")
    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except ValueError as e:
        raise DataFormatError(f"{path}: {e}. Fix: replace it with a number or null") from None


def read_jsonl(path: str | Path, what: str = "JSON Lines file", fix: str = "", cut_torn_end: bool = False) -> list:
    """One JSON value per line (blank lines skipped). A line that is not JSON is a DataFormatError naming the file
    and the line; with cut_torn_end, a torn last line (a crash mid-append) is cut off the file itself instead, so
    that appending continues after the last whole line."""
    lines = read_text(path, what).splitlines(keepends=True)
    rows = []
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if cut_torn_end and n == len(lines) - 1:
                logging.getLogger(__name__).warning("%s: cutting off a torn last line", path)
                with Path(path).open("r+b") as f:
                    f.truncate(sum(len(x.encode("utf-8")) for x in lines[:n]))
                break
            raise DataFormatError(
                f"{path}: line {n + 1} is not JSON ({e.msg}). Fix: {fix or 'repair the line'}"
            ) from None
    return rows


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the user's umask like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str, overwrite: bool = True) -> Path:
    """Write text atomically (temp file in the same folder, then rename)."""
    return _atomic_write(Path(path), lambda f: f.write(text), "w", overwrite)


def write_bytes(path: str | Path, data: bytes, overwrite: bool = True) -> Path:
    """Write bytes atomically."""
    return _atomic_write(Path(path), lambda f: f.write(data), "wb", overwrite)


def write_json(path: str | Path, obj: Any, overwrite: bool = True, indent: int | None = 2) -> Path:
    """Write JSON atomically with stable formatting (UTF-8, no ASCII escaping, trailing newline)."""
    text = json.dumps(obj, ensure_ascii=False, indent=indent) + "\n"
    return write_text(path, text, overwrite=overwrite)
