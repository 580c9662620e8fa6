"""Run folders: every run keeps its effective config in config.json and the fingerprints of its inputs (mixture,
base weights, adapter, benchmark items, a code version: `core.fingerprints`) in inputs.json, is finished when its
marker file exists, and is reused, resumed or replaced by one rule (`start_run`), the same for every stage.

- no folder, or no config.json: a new run;
- the same config and inputs, finished: reuse it (`is_finished`);
- the same config and inputs, unfinished: resume it (checkpoints, generations already written);
- the same config, other inputs: the work is stale; one line names the input that changed, and it is redone;
- another config, unfinished: a failed or interrupted run never blocks the corrected one; it is cleared;
- another config, finished: refused unless `overwrite` (CLI: `--overwrite`), so a finished run is never lost
  silently; `overwrite` always redoes the run.

One writer per run folder: `run_lock` holds a file lock beside the folder (.<name>.lock) while a stage writes, and
names its holder (pid, host, command) in .<name>.lock.json; a second writer waits MLLM_SAFETY_LOCK_WAIT seconds
(default 10) and then stops with one line naming the holder.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock, Timeout

from .files import write_json
from .fingerprints import input_change

log = logging.getLogger(__name__)
DONE = "metrics.json"  # the last file every run writes
INPUTS = "inputs.json"  # the fingerprints of what the run was made from
WAIT_ENV = "MLLM_SAFETY_LOCK_WAIT"
F = TypeVar("F", bound=Callable[..., Any])


class RunBusyError(FileExistsError):
    """Another process is writing the run folder (a user error: the CLI prints it as one line)."""


def as_config(cfg: Any) -> dict[str, Any]:
    """A config object or dict as the JSON-ready dict config.json holds."""
    if isinstance(cfg, dict):
        return json.loads(json.dumps(cfg, default=str))
    return cfg.to_dict()


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def saved_config(run_dir: Path) -> dict[str, Any] | None:
    """The config.json of a run folder, or None when there is none (or it is unreadable)."""
    return _read(Path(run_dir) / "config.json")


def saved_inputs(run_dir: Path) -> dict[str, str]:
    """The input fingerprints a run folder recorded ({} for a run made before they were recorded)."""
    return _read(Path(run_dir) / INPUTS) or {}


def is_finished(run_dir: str | Path, cfg: Any, marker: str = DONE, inputs: dict[str, str] | None = None) -> bool:
    """True when run_dir holds a finished run (its marker file) made with this very config from these inputs."""
    run_dir = Path(run_dir)
    same = saved_config(run_dir) == as_config(cfg) and saved_inputs(run_dir) == (inputs or {})
    return (run_dir / marker).is_file() and same


def replace_reason(run_dir: Path, current: dict, inputs: dict[str, str], overwrite: bool, marker: str) -> str:
    """Why the folder's earlier run must be cleared ("" to keep it); a finished run of another config is refused."""
    previous = saved_config(run_dir)
    if previous is None:
        return ""
    if previous != current:
        changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        if (run_dir / marker).is_file() and not overwrite:
            raise FileExistsError(
                f"{run_dir} holds a finished run made with a different config (changed: {changed}). "
                "Fix: pass --overwrite (overwrite=True) to replace it, or use another preset name"
            )
        return f"replacing a run made with a different config (changed: {changed})"
    if overwrite:
        return "--overwrite: doing the run again"
    change = input_change(saved_inputs(run_dir), inputs)
    return f"{change}; doing the work again" if change else ""


def start_run(
    run_dir: str | Path, cfg: Any, overwrite: bool = False, marker: str = DONE, inputs: dict[str, str] | None = None
) -> Path:
    """Create (or keep, to resume) run_dir for a run of cfg on these inputs; see the module's rules. The marker is
    removed: the run is unfinished until it writes it again."""
    run_dir, current = Path(run_dir), as_config(cfg)
    reason = replace_reason(run_dir, current, inputs or {}, overwrite, marker)
    if reason:
        log.warning("%s: %s", run_dir, reason)
        shutil.rmtree(run_dir)
    record_run(run_dir, current, inputs or {}, marker)
    return run_dir


def record_run(run_dir: Path, cfg: Any, inputs: dict[str, str], marker: str = DONE) -> None:
    """Write config.json and inputs.json, and remove the marker: the run is unfinished until it writes it again."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / marker).unlink(missing_ok=True)
    write_json(run_dir / "config.json", as_config(cfg))
    write_json(run_dir / INPUTS, dict(sorted(inputs.items())))


# ---- one writer per run folder ----------------------------------------------------------------------------------


def lock_files(run_dir: Path) -> tuple[Path, Path]:
    """The lock beside a run folder and the file naming its holder (beside it: clearing the folder keeps them)."""
    run_dir = Path(run_dir).absolute()
    return run_dir.with_name(f".{run_dir.name}.lock"), run_dir.with_name(f".{run_dir.name}.lock.json")


def lock_wait() -> float:
    """How long a second writer waits for the lock: MLLM_SAFETY_LOCK_WAIT seconds (default 10)."""
    return float(os.environ.get(WAIT_ENV) or 10)


def holder(path: Path) -> str:
    """Who holds a lock, from the file it wrote when acquiring it."""
    info = _read(path)
    if not info:
        return "another process"
    command = " ".join(str(info.get("command")).split())  # one line, whatever the command held
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}: {command[:200]}"


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold the run folder's lock while the block writes; re-entrant within a process. A second writer waits
    lock_wait() seconds, then stops with RunBusyError naming the holder."""
    lock_path, holder_path = lock_files(Path(run_dir))
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path, is_singleton=True)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("%s is being written by %s; waiting up to %.0f s", run_dir, holder(holder_path), lock_wait())
        try:
            lock.acquire(timeout=lock_wait())
        except Timeout:
            raise RunBusyError(
                f"{run_dir} is being written by {holder(holder_path)}. Fix: wait for it to finish (or stop it), "
                f"or set {WAIT_ENV}=<seconds> to wait longer"
            ) from None
    outermost = lock.lock_counter == 1
    try:
        if outermost:
            since = time.strftime("%Y-%m-%d %H:%M:%S")
            who = {"pid": os.getpid(), "host": socket.gethostname(), "since": since, "command": " ".join(sys.orig_argv)}
            write_json(holder_path, who)
        yield
    finally:
        if outermost:
            holder_path.unlink(missing_ok=True)
        lock.release()


def one_writer(stage: str) -> Callable[[F], F]:
    """Decorate a stage's run(preset, ...) so that it holds its run folder's lock while it runs."""

    def wrap(run: F) -> F:
        @functools.wraps(run)
        def locked(preset: Any, *args: Any, **kwargs: Any) -> Any:
            with run_lock(preset.stage(stage).stage_dir):
                return run(preset, *args, **kwargs)

        return locked  # type: ignore[return-value]

    return wrap


# what stage 03 saves per fine-tuning kind: (folder inside the run, the file that marks it complete)
TRAINED = {"lora": ("adapter", "adapter_config.json"), "full": ("model", "config.json")}


def trained_weights(run_dir: str | Path) -> Path | None:
    """The weights a stage-03 run saved: its adapter/ (LoRA) or its whole model/ (full fine-tuning); None if none."""
    for folder, marker in TRAINED.values():
        if (Path(run_dir) / folder / marker).is_file():
            return Path(run_dir) / folder
    return None
