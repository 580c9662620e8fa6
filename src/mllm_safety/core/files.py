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


BOM = "\ufeff"  # a UTF-8 byte-order mark (Windows editors write one): skipped, the rest is read as UTF-8
MAX_FILE_GB = 1.5  # larger files are refused before reading: parsing takes about twice their size in memory
MAX_FILE_ENV = "MLLM_SAFETY_MAX_FILE_GB"  # raises the limit on a machine with the memory


def check_size(path: Path) -> None:
    """Refuse a file too large to read whole (mix665k, the largest input, is about 1 GB), naming the limit."""
    limit = float(os.environ.get(MAX_FILE_ENV) or MAX_FILE_GB)
    size = path.stat().st_size / 1e9
    if size > limit:
        raise DataFormatError(
            f"{path}: {size:.1f} GB, more than the {limit:g} GB a data file may have (reading takes about twice "
            f"its size in memory). Fix: check that it is the right file, or set {MAX_FILE_ENV} to a larger limit"
        )


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file's content (a leading byte-order mark dropped); a missing file, a folder, a file over
    MAX_FILE_GB or another encoding is a DataFormatError naming it."""
    path = Path(path)
    if path.is_dir():
        raise DataFormatError(f"{path}: is a folder, not a {what}. Fix: name the file inside it")
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found. Fix: check the path (and data_root in the preset)")
    check_size(path)
    try:
        return path.read_text(encoding="utf-8").removeprefix(BOM)
    except UnicodeDecodeError as e:
        raise DataFormatError(
            f"{path}: not UTF-8 text (byte {e.start}: {e.reason}). Fix: convert it to UTF-8 (e.g. iconv -t UTF-8)"
        ) from None


class _RepeatedKey(ValueError):
    """A key given twice in one JSON object (json keeps the last one silently)."""


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # rare: find the first key seen twice
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return obj


def repeated_key(where: str | Path, error: _RepeatedKey) -> DataFormatError:
    """The error for a key given twice in one object, naming the file (and line) and the key."""
    return DataFormatError(
        f"{where}: key {error.args[0]!r} appears twice in one object; JSON keeps only the last. "
        "Fix: rename or merge the two entries"
    )


def parse_json(text: str, path: str | Path) -> Any:
    """One JSON value; NaN/Infinity (not JSON, though Python writes them) and a key repeated in one object (JSON
    readers keep the last silently, dropping a question) are DataFormatErrors naming the file and the key."""
    try:
        return json.loads(text, parse_constant=_no_constants, object_pairs_hook=_unique_keys)
    except _RepeatedKey as e:
        raise repeated_key(path, e) from None
    except json.JSONDecodeError:
        raise
    except ValueError as e:
        raise DataFormatError(f"{path}: {e}. Fix: replace it with a number or null") from None


def _json_lines(text: str) -> bool:
    """True when the first line alone is a whole JSON object (a JSON Lines file)."""
    try:
        return isinstance(json.loads(text.partition("\n")[0]), dict)
    except ValueError:
        return False


def read_json(path: str | Path) -> Any:
    """Read a JSON file: a missing file, a folder, another encoding, a syntax error, JSON Lines content, NaN/Infinity
    or a repeated key is a DataFormatError naming the file and the place."""
    text = read_text(path, "JSON file")
    try:
        return parse_json(text, path)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and _json_lines(text):
            raise DataFormatError(
                f"{path}: holds JSON Lines (one object per line), not one JSON value. Fix: convert it to a JSON "
                "list (e.g. jq -s . FILE), or name it .jsonl where a .jsonl file is read"
            ) from None
        raise DataFormatError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None


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
            rows.append(json.loads(line, object_pairs_hook=_unique_keys))
        except _RepeatedKey as e:
            raise repeated_key(f"{path}: line {n + 1}", e) from None
        except json.JSONDecodeError as e:
            if cut_torn_end and n == len(lines) - 1:
                logging.getLogger(__name__).warning("%s: cutting off a torn last line", path)
                _truncate(Path(path), lines[:n])
                break
            raise DataFormatError(
                f"{path}: line {n + 1} is not JSON ({e.msg}). Fix: {fix or 'repair the line'}"
            ) from None
    return rows


def _truncate(path: Path, kept: list[str]) -> None:
    """Cut the file after the kept lines (a byte-order mark, dropped when read, counted back in)."""
    with path.open("r+b") as f:
        bom = len(BOM.encode()) if f.read(3) == BOM.encode() else 0
        f.truncate(bom + sum(len(x.encode("utf-8")) for x in kept))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


TMP_SUFFIX = ".tmp"  # an atomic write's temporary file: .<name>.<random>.tmp beside its target


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the user's umask like any file
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.filename is None and e.errno is not None:  # a full disk is raised by write(), without the path
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_partial_writes(folder: str | Path) -> list[Path]:
    """Delete the temporary files that a killed process left in `folder` mid-write (an atomic write's
    `.<name>.*.tmp`): a rerun starts from whole files only. Returns what was removed."""
    leftovers = sorted(Path(folder).glob(f".*{TMP_SUFFIX}"))
    for path in leftovers:
        path.unlink(missing_ok=True)
    if leftovers:
        logging.getLogger(__name__).info("%s: removed %d partial write(s) of a killed run", folder, len(leftovers))
    return leftovers


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
