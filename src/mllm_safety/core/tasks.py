"""A grid's cells as every engine (core.executors) runs them.

A cell is a `Task`: a module-level function of a picklable spec (its config inside), run by a `Runner` that writes,
in the grid's folder, the cell's log (<cell>.log), its one-line error when it fails (<cell>.error.txt) and, last,
its marker (<cell>.done.json) holding the digest of its config and inputs: a driver skips a cell whose marker holds
the digest it computes now, whichever engine wrote it. What ran where is recorded in <folder>/submission.json.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from submitit.helpers import Checkpointable

from .console import inner_bars_off
from .files import DataFormatError, write_json, write_text
from .fingerprints import value_digest

log = logging.getLogger(__name__)
RECORD = "submission.json"
Todo = list[tuple["Task", str]]  # the cells an engine runs, each with its digest


@dataclass(frozen=True)
class Task:
    """One cell: `fn(spec)` writes its run folders; `config` and the fingerprints `inputs()` returns make its digest."""

    name: str  # unique in the grid; names the cell's marker and log
    fn: Callable[[Any], Any]  # a module-level function (workers import it by name)
    spec: Any  # picklable data: everything the cell needs, its config inside
    config: Mapping[str, Any]  # JSON-ready: the settings the cell's outputs depend on
    inputs: Callable[[], Mapping[str, str]] | None = None  # fingerprints of what it reads (called by the driver)
    wave: int = 0  # runs after every cell of the earlier waves has ended
    deps: tuple[str, ...] = ()  # cells that must have finished; if one failed, this one is reported, not run

    def digest(self) -> str:
        """What a finished marker must hold for the cell to be skipped."""
        return value_digest({"config": self.config, "inputs": dict(self.inputs() if self.inputs else {})})


@dataclass(frozen=True)
class Failure:
    """A cell that did not finish: its name, one line saying why, and the log to read."""

    cell: str
    error: str
    log: str


class GridFailed(DataFormatError):
    """Some cells failed; their table was logged (the CLI prints this one line and exits 2)."""


def marker(folder: Path, name: str) -> Path:
    return Path(folder) / f"{name}.done.json"


def log_path(folder: Path, name: str) -> Path:
    return Path(folder) / f"{name}.log"


def error_path(folder: Path, name: str) -> Path:
    return Path(folder) / f"{name}.error.txt"


def is_done(folder: Path, name: str, digest: str) -> bool:
    """True when the cell's marker holds this digest (a finished cell of the same config and inputs)."""
    try:
        return json.loads(marker(folder, name).read_text(encoding="utf-8"))["digest"] == digest
    except (OSError, ValueError, KeyError, TypeError):
        return False


def one_line(error: BaseException) -> str:
    """An exception as one line: its type and the first line of its message (200 characters at most)."""
    text = str(error).strip().splitlines()
    line = f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


@contextmanager
def cell_log(path: Path, capture: bool) -> Iterator[None]:
    """Send logging (and, in a worker, stdout and stderr) to the cell's log while it runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root, handler = logging.getLogger(), logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO))
    try:
        with ExitStack() as stack:
            if capture:
                stream = stack.enter_context(path.open("a", encoding="utf-8", buffering=1))
                stack.enter_context(redirect_stdout(stream))
                stack.enter_context(redirect_stderr(stream))
            yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


class Runner(Checkpointable):
    """A cell as every engine runs it. Checkpointable: when SLURM signals a time-out or a preemption, submitit
    requeues this same call, and the cell resumes from what its run folders hold (training from its checkpoint)."""

    def __init__(self, task: Task, digest: str, folder: Path, engine: str, threads: int | None = None) -> None:
        self.name, self.fn, self.spec, self.digest = task.name, task.fn, task.spec, digest
        self.folder, self.cwd, self.engine, self.threads = str(Path(folder).absolute()), os.getcwd(), engine, threads

    def __call__(self) -> None:
        import torch

        os.chdir(self.cwd)  # the preset's relative paths mean what they meant to the driver
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads or before)
        try:
            self.run_cell(torch.get_num_threads())
        finally:
            torch.set_num_threads(before)  # the inline engine's driver keeps its own

    def run_cell(self, threads: int) -> None:
        folder = Path(self.folder)
        error_path(folder, self.name).unlink(missing_ok=True)
        started = time.monotonic()
        with cell_log(log_path(folder, self.name), capture=self.engine != "inline"), inner_bars_off():
            log.info(
                "cell %s: engine %s, host %s, pid %d, %d torch threads",
                self.name,
                self.engine,
                socket.gethostname(),
                os.getpid(),
                threads,
            )
            try:
                self.fn(self.spec)
            except Exception as e:
                write_text(error_path(folder, self.name), one_line(e) + "\n")
                log.exception("cell %s failed", self.name)
                raise
        job = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", ""))
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        done = {"cell": self.name, "digest": self.digest, "engine": self.engine, "host": socket.gethostname()}
        done["threads"] = threads
        job = (f"{job}_{task}" if task else job) or f"pid {os.getpid()}"
        done |= {"job": job, "finished": now(), "wall_s": time.monotonic() - started}
        write_json(marker(folder, self.name), done)


# ---- the record of what ran where ---------------------------------------------------------------------------------


def read_record(folder: Path) -> dict[str, Any]:
    """The grid's submission record ({} when there is none or it is unreadable)."""
    try:
        record = json.loads((Path(folder) / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def update_record(folder: Path, engine: str, cells: Mapping[str, Mapping[str, Any]], array: str = "") -> None:
    """Add cells (name -> job, digest) to the record, with the engine, this driver and the time."""
    record = read_record(folder)
    stamp = {"engine": engine, "submitted": now()}
    record |= {"engine": engine, "driver": {"pid": os.getpid(), "host": socket.gethostname()}, "updated": now()}
    record.setdefault("cells", {}).update({name: {**stamp, **dict(info)} for name, info in cells.items()})
    if array:
        record.setdefault("arrays", []).append(
            {"array": array, "cells": sorted(cells), "submitted": stamp["submitted"]}
        )
    write_json(Path(folder) / RECORD, record)


def live_driver(folder: Path) -> str:
    """'pid N on HOST' when another process on this host is running this grid's local or inline engine; else ''."""
    record = read_record(folder)
    driver = record.get("driver") or {}
    pid, host = driver.get("pid"), driver.get("host")
    if record.get("engine") == "slurm" or host != socket.gethostname() or not pid or pid == os.getpid():
        return ""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return f"pid {pid} on {host}" if b"python" in cmdline else ""


def claim(folder: Path, engine: str, todo: Todo) -> None:
    """Refuse to run a grid that another local driver is running; then record this one."""
    if other := live_driver(folder):
        raise FileExistsError(
            f"{folder}: this grid is being run by {other}. Fix: wait for it to end, or stop it "
            "(Ctrl-C there, or --cancel)"
        )
    update_record(folder, engine, {t.name: {"job": f"pid {os.getpid()}", "digest": d} for t, d in todo})
