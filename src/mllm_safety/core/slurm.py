"""The `slurm` engine: each wave of unfinished cells is one job array submitted with submitit (AutoExecutor,
cluster="slurm"), watched until every job has ended, and recorded in the grid's submission.json.

- Re-attach: a cell whose recorded job (same digest) is still queued or running is watched, never submitted twice.
- Time limits and preemption: the cells are submitit Checkpointables; SLURM signals a job before its time limit
  (slurm_time_min) and submitit requeues it (at most slurm_max_requeues time-outs; preemptions always), and the cell
  resumes from its run folders: training from its newest checkpoint.
- States come from `squeue` (finished jobs stay there MinJobAge seconds), then `sacct` where accounting is on; a job
  in neither has left the queue. A job counts as ended when two polls agree, so a requeue is never taken for an end.
- `cancel` scancels the grid's queued and running jobs.
"""

from __future__ import annotations

import getpass
import logging
import os
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .config import ExecutorConfig
from .files import DataFormatError
from .tasks import Failure, Runner, Todo, error_path, is_done, log_path, read_record, update_record

log = logging.getLogger(__name__)
POLL_ENV = "MLLM_SAFETY_POLL_S"
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"}
ENDED |= {"PREEMPTED", "GONE"}  # GONE: in neither squeue nor sacct
WHY = {
    "CANCELLED": "cancelled (scancel or --cancel)",
    "TIMEOUT": "ran past slurm_time_min and was not requeued: raise slurm_time_min or slurm_max_requeues",
    "OUT_OF_MEMORY": "out of memory: raise slurm_mem_gb",
    "PREEMPTED": "preempted and not requeued",
    "GONE": "left the queue without finishing",
    "COMPLETED": "the job ended without finishing the cell",
}


class SubmissionError(DataFormatError):
    """sbatch refused the array (a bad partition, account or resource request): one line, exit 2."""


def poll_s() -> float:
    """Seconds between two looks at the queue: MLLM_SAFETY_POLL_S (default 20)."""
    return float(os.environ.get(POLL_ENV) or 20)


def command(args: list[str]) -> str:
    """A SLURM client's output ('' when it fails or is missing: the caller falls back)."""
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def parse_states(text: str) -> dict[str, str]:
    """`id|STATE` lines as {id: state} ('CANCELLED by 0' is CANCELLED; job steps are left out)."""
    out = {}
    for line in text.splitlines():
        job, _, state = line.strip().partition("|")
        if job and state and "." not in job:
            out[job] = state.split()[0].rstrip("+")
    return out


def job_states(jobs: Iterable[str]) -> dict[str, str]:
    """The state of each job id (array tasks as `<array>_<task>`): squeue first, then sacct, else GONE."""
    jobs = sorted(set(jobs))
    found = parse_states(command(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-u", getpass.getuser()]))
    missing = sorted({j.split("_")[0] for j in jobs if j not in found})
    if missing:
        found = parse_states(command(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(missing)])) | found
    return {j: found.get(j, "GONE") for j in jobs}


def parameters(cfg: ExecutorConfig, name: str) -> dict[str, Any]:
    """submitit's parameters from the preset's keys; the time limit always explicit (submitit's default is short)."""
    out: dict[str, Any] = {
        "name": name,
        "timeout_min": cfg.slurm_time_min,
        "cpus_per_task": cfg.slurm_cpus_per_task,
        "mem_gb": cfg.slurm_mem_gb,
        "slurm_array_parallelism": cfg.slurm_array_parallelism,
        "slurm_signal_delay_s": min(90, cfg.slurm_time_min * 15),  # the warning before the limit: checkpoint time
        "slurm_additional_parameters": dict(cfg.slurm_additional),
    }
    optional = {"slurm_partition": cfg.slurm_partition, "slurm_account": cfg.slurm_account}
    optional["slurm_gpus_per_task"] = cfg.slurm_gpus_per_task
    return out | {k: v for k, v in optional.items() if v}


def submit(cfg: ExecutorConfig, folder: Path, todo: Todo) -> dict[str, str]:
    """Submit the cells as one job array; {cell: job id}. A refusal by sbatch is one line naming the keys to fix."""
    import submitit
    from submitit.core.utils import FailedJobError

    executor = submitit.AutoExecutor(
        folder=folder / "jobs", cluster="slurm", slurm_max_num_timeout=cfg.slurm_max_requeues
    )
    executor.update_parameters(**parameters(cfg, f"mllm-{folder.parent.parent.name}"))
    try:
        threads = cfg.threads or cfg.slurm_cpus_per_task
        with executor.batch():
            jobs = [executor.submit(Runner(t, d, folder, "slurm", threads)) for t, d in todo]
    except (FailedJobError, OSError) as e:
        said = "; ".join(line.strip() for line in str(e).strip().splitlines()[:3]) or type(e).__name__
        raise SubmissionError(
            f"sbatch refused the cells of {folder}: {said}. Fix: check the preset's slurm_* keys (partition, "
            "account, GPUs, memory, slurm_additional) against `sinfo` and your cluster's limits"
        ) from None
    return {task.name: job.job_id for (task, _), job in zip(todo, jobs, strict=True)}


def reattach(folder: Path, todo: Todo) -> dict[str, str]:
    """{cell: job} of the cells whose recorded job (for this digest) is still queued or running."""
    cells = read_record(folder).get("cells", {})
    recorded = {t.name: cells[t.name]["job"] for t, d in todo if cells.get(t.name, {}).get("digest") == d}
    recorded = {k: v for k, v in recorded.items() if cells[k].get("engine") == "slurm"}
    states = job_states(recorded.values()) if recorded else {}
    return {name: job for name, job in recorded.items() if states[job] not in ENDED}


def run_wave(cfg: ExecutorConfig, folder: Path, todo: Todo, bar: tqdm) -> list[Failure]:
    """Re-attach to the cells still in the queue, submit the others as one array, and watch them all."""
    jobs = reattach(folder, todo)
    if jobs:
        log.info("re-attached to %d cell(s) already in the queue: jobs %s", len(jobs), ", ".join(jobs.values()))
    new = [(t, d) for t, d in todo if t.name not in jobs]
    if new:
        submitted = submit(cfg, folder, new)
        array = next(iter(submitted.values())).split("_")[0]
        digests = dict((t.name, d) for t, d in new)
        update_record(folder, "slurm", {n: {"job": j, "digest": digests[n]} for n, j in submitted.items()}, array)
        log.info("submitted %d cell(s) as job %s (logs: %s)", len(new), array, folder / "jobs")
        jobs |= submitted
    return watch(folder, jobs, dict((t.name, d) for t, d in todo), bar)


def watch(folder: Path, jobs: dict[str, str], digests: dict[str, str], bar: tqdm) -> list[Failure]:
    """Poll until every job has ended: a cell is done when its marker appears, failed when its job ended without."""
    pending, ended, failures = dict(jobs), {}, []
    while pending:
        states = job_states(pending.values())
        for name, job in list(pending.items()):
            state = states[job]
            if is_done(folder, name, digests[name]):
                del pending[name]
            elif state in ENDED and ended.get(name) == state:
                failures.append(Failure(name, reason(folder, name, state), str(where_to_read(folder, name, job))))
                del pending[name]
            else:
                ended[name] = state if state in ENDED else None
                continue
            bar.update()
        if pending:
            time.sleep(poll_s())
    return failures


def reason(folder: Path, name: str, state: str) -> str:
    """The cell's own one-line error when it wrote one, else what SLURM's state means."""
    try:
        return error_path(folder, name).read_text(encoding="utf-8").strip()
    except OSError:
        return f"{state}: {WHY.get(state, 'see the log')}"


def where_to_read(folder: Path, name: str, job: str) -> Path:
    """The cell's log, or submitit's stderr of the job when the cell never started."""
    cell = log_path(folder, name)
    return cell if cell.is_file() else folder / "jobs" / f"{job}_0_log.err"


def cancel(folder: Path) -> list[str]:
    """scancel every job array of the grid that still has cells queued or running; the ids cancelled."""
    cells = read_record(folder).get("cells", {})
    jobs = [c["job"] for c in cells.values() if c.get("engine") == "slurm"]
    states = job_states(jobs) if jobs else {}
    arrays = sorted({j.split("_")[0] for j, s in states.items() if s not in ENDED})
    if arrays:
        subprocess.run(["scancel", *arrays], check=True, capture_output=True, text=True)
    return arrays
