"""Engines that run a grid of cells (DESIGN.md, "Runs, cells and engines"): `inline` (one after another in this
process), `local` (a pool of `workers` spawned processes, each on a GPU of its own or a share of the CPUs) and
`slurm` (one submitit job array per wave: core.slurm). Settings: `core.config.ExecutorConfig`; what a cell is, its
marker, log and the submission record: `core.tasks`.

Cells run in waves (a wave starts when the earlier ones have ended); a finished cell (its marker holds its digest)
is skipped, a cell whose dependency failed is reported, not run; a failing cell never stops the others, and the
grid ends with a table of the failed cells (`GridFailed`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from tabulate import tabulate
from tqdm.auto import tqdm

from .config import ExecutorConfig
from .console import progress
from .slurm import cancel as cancel_slurm
from .slurm import run_wave
from .tasks import (
    RECORD,
    Failure,
    GridFailed,
    Runner,
    Task,
    Todo,
    claim,
    is_done,
    live_driver,
    log_path,
    marker,
    one_line,
    read_record,
)

log = logging.getLogger(__name__)


def run_inline(cfg: ExecutorConfig, folder: Path, todo: Todo, bar: tqdm) -> list[Failure]:
    """Each cell in this process, one after another; a failure is recorded and the next cell runs."""
    claim(folder, "inline", todo)
    failures = []
    for task, digest in todo:
        try:
            Runner(task, digest, folder, "inline", cfg.threads or None)()
        except Exception as e:
            failures.append(Failure(task.name, one_line(e), str(log_path(folder, task.name))))
        bar.update()
    return failures


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them ([] without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    named = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return (named or [str(k) for k in range(torch.cuda.device_count())])[: torch.cuda.device_count()]


def place_worker(gpus: Any, threads: int) -> None:
    """A local worker's set-up, before it imports torch: its own GPU (from the queue), its share of the CPUs."""
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus.get()
    os.environ["OMP_NUM_THREADS"] = str(threads)


def run_local(cfg: ExecutorConfig, folder: Path, todo: Todo, bar: tqdm) -> list[Failure]:
    """At most `workers` cells at once in spawned processes, each on its own GPU and `threads` torch threads
    (default: its share of the CPUs)."""
    claim(folder, "local", todo)
    gpus = visible_gpus()
    workers = min(cfg.workers, len(todo), len(gpus) or cfg.workers)
    threads = cfg.threads or max(1, len(os.sched_getaffinity(0)) // workers)
    context = multiprocessing.get_context("spawn")  # never fork a process that may hold CUDA or torch threads
    queue = context.Queue() if gpus else None
    for gpu in gpus[:workers]:
        queue.put(gpu)
    log.info("local engine: %d workers, %s", workers, f"GPUs {gpus[:workers]}" if gpus else f"{threads} threads each")
    failures = []
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=place_worker, initargs=(queue, threads))
    try:
        futures = {pool.submit(Runner(t, d, folder, "local", threads)): t for t, d in todo}
        for future in as_completed(futures):
            task = futures[future]
            if (error := future.exception()) is not None:
                failures.append(Failure(task.name, one_line(error), str(log_path(folder, task.name))))
            bar.update()
    except KeyboardInterrupt:
        for process in list(getattr(pool, "_processes", {}).values()):  # stop running cells now, not when done
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return failures


ENGINES = {"inline": run_inline, "local": run_local, "slurm": run_wave}


def run_grid(tasks: Sequence[Task], cfg: ExecutorConfig, folder: Path, redo: bool = False, desc: str = "cells") -> None:
    """Run every unfinished cell, wave by wave, on the configured engine, under one progress bar; raise GridFailed
    naming the failed cells when any failed. redo: ignore the markers (each cell then checks its own run folders)."""
    folder = Path(folder).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    failed: dict[str, Failure] = {}
    with progress(total=len(tasks), desc=desc, unit="cell") as bar:
        for wave in sorted({t.wave for t in tasks}):
            todo = []
            for task in (t for t in tasks if t.wave == wave):
                if blocked := [d for d in task.deps if d in failed]:
                    failed[task.name] = Failure(task.name, f"not run: {blocked[0]} failed", failed[blocked[0]].log)
                    bar.update()
                    continue
                digest = task.digest()
                if not redo and is_done(folder, task.name, digest):
                    bar.update()
                    continue
                marker(folder, task.name).unlink(missing_ok=True)  # unfinished until it writes it again
                todo.append((task, digest))
            if todo:
                failed |= {f.cell: f for f in ENGINES[cfg.executor](cfg, folder, todo, bar)}
                bar.set_postfix(failed=len(failed))
    if failed:
        report(list(failed.values()), len(tasks), folder)


def report(failures: list[Failure], total: int, folder: Path) -> None:
    """Log the table of failed cells and raise GridFailed (one line)."""
    rows = [(f.cell, f.error, f.log) for f in failures]
    log.error("failed cells:\n%s", tabulate(rows, headers=["cell", "error", "log"], tablefmt="github"))
    names = ", ".join(f.cell for f in failures[:5]) + (", ..." if len(failures) > 5 else "")
    raise GridFailed(
        f"{len(failures)} of {total} cells failed ({names}); the table above names each one's log (in {folder}). "
        "Fix: correct the cause, then run the same command again: only the unfinished cells run"
    )


def cancel_grid(folder: Path) -> str:
    """Stop the grid's cells: scancel its SLURM jobs, or interrupt the local driver running it; says what it did."""
    record = read_record(folder)
    if record.get("engine") == "slurm":
        jobs = cancel_slurm(folder)
        return f"cancelled SLURM job(s) {', '.join(jobs)}" if jobs else "no job of this grid is queued or running"
    if driver := live_driver(folder):
        os.kill(int(record["driver"]["pid"]), signal.SIGINT)  # its KeyboardInterrupt stops the workers too
        return f"interrupted the {record.get('engine')} run of this grid ({driver}); finished cells are kept"
    return f"no run of this grid is under way ({folder / RECORD})"
