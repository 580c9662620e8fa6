"""Stage 05's engines on a real one-node SLURM cluster (tests/slurm_cluster.py) and on a local pool: the same cells
give byte-identical run folders whichever engine ran them; a failing cell is reported while the others finish and a
rerun submits it alone; the same command re-attaches to a running array; a cell cancelled mid-training resumes from
its checkpoint; --cancel stops the grid's jobs. Where this machine cannot run SLURM these tests FAIL with the reason.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import SMOKE_ORGANISM
from slurm_cluster import ClusterError, start, stop

from mllm_safety import ablations as ab
from mllm_safety.core.files import DataFormatError
from mllm_safety.core.preset import Preset
from mllm_safety.core.slurm import POLL_ENV, SubmissionError, job_states, parameters
from mllm_safety.core.tasks import GridFailed, Runner, Task, read_record

# small jobs: one CPU thread each (as the inline run), two at a time on the test node
SLURM = dict(
    executor="slurm",
    slurm_gpus_per_task=0,
    slurm_cpus_per_task=1,
    slurm_mem_gb=2,
    slurm_time_min=20,
    slurm_array_parallelism=2,
)
FRACTION_GRID = dict(studies=["fraction"], fractions=[0.0, 0.1], fraction_seeds=1)  # base_harmful, frac0-s0, frac10-s0
TRAINED = ("02_mix_rejection_data/mix.json", "03_qlora_finetune/mix/adapter/adapter_model.safetensors")
EVALUATED = ("04_evaluate/config.json", "04_evaluate/metrics.json", "04_evaluate/results.csv")
THREADS = max(1, len(os.sched_getaffinity(0)) // 2)  # what each of two local workers gets


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """munged, slurmctld and slurmd from a temporary folder, stopped by pid at the end; clients find it through
    SLURM_CONF. Not having SLURM here is a failure, not a skip."""
    try:
        cluster = start(tmp_path_factory.mktemp("slurm"))
    except (ClusterError, OSError, subprocess.CalledProcessError) as e:
        pytest.fail(f"this machine cannot run the test SLURM cluster: {e}")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SLURM_CONF", str(cluster.conf))
        env.setenv(POLL_ENV, "2")
        yield cluster
    stop(cluster)


@pytest.fixture(scope="module")
def organism(tmp_path_factory):
    """A barely trained smoke-size organism in its world, shared by every grid below (absolute paths)."""
    from mllm_safety.model_organism import run as build

    root = tmp_path_factory.mktemp("cluster")
    where = {"runs_root": str(root / "org"), "data_root": str(root / "data"), "model_path": str(root / "base")}
    build(Preset.from_values("smoke", {**where, **SMOKE_ORGANISM}))
    return {"data_root": where["data_root"], "model_path": where["model_path"]}


def grid(organism, **values) -> Preset:
    """The smoke preset's grid, runs relative to the working directory (runs/), on the shared organism."""
    return Preset.load("smoke", runs_root="runs", **organism, **values)


def run_in(folder: Path, preset: Preset, monkeypatch, threads: int = 1) -> ab.AblationResult:
    """Stage 05 with `folder` as the working directory, on `threads` torch threads (each SLURM job here: one)."""
    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(folder)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return ab.run(preset)
    finally:
        torch.set_num_threads(before)


def stage(folder: Path, preset: str = "smoke") -> Path:
    return folder / "runs" / preset / "05_ablations"


def slurm_jobs(folder: Path, preset: str = "smoke") -> list[str]:
    return [a["array"] for a in read_record(stage(folder, preset) / "cells").get("arrays", [])]


def test_the_slurm_grid_reports_a_failed_cell_reruns_it_alone_and_matches_inline(
    slurm, organism, tmp_path, monkeypatch, caplog, capsys
):
    started = time.monotonic()
    inline = run_in(tmp_path / "inline", grid(organism, **FRACTION_GRID), monkeypatch)
    on_slurm = grid(organism, **FRACTION_GRID, **SLURM)
    # a cell that fails: its training folder holds a finished run of another config (refused without --overwrite)
    blocked = stage(tmp_path / "slurm") / "runs/frac0-s0/03_qlora_finetune/mix"
    blocked.mkdir(parents=True)
    (blocked / "config.json").write_text('{"other": 1}')
    (blocked / "metrics.json").write_text("{}")
    with caplog.at_level(logging.ERROR), pytest.raises(GridFailed, match=r"1 of 3 cells failed \(frac0-s0\)"):
        run_in(tmp_path / "slurm", on_slurm, monkeypatch)
    table = caplog.text
    assert "| frac0-s0" in table and "FileExistsError" in table and "finished run made with a different config" in table
    assert str(stage(tmp_path / "slurm") / "cells" / "frac0-s0.log") in table
    cells = stage(tmp_path / "slurm") / "cells"
    assert (cells / "frac10-s0.done.json").is_file() and (cells / "base_harmful.done.json").is_file()
    # the cause removed, the same command submits the failed cell alone
    for f in blocked.iterdir():
        f.unlink()
    first = read_record(cells)["arrays"][0]
    again = run_in(tmp_path / "slurm", on_slurm, monkeypatch)
    second = read_record(cells)["arrays"][1]
    assert sorted(first["cells"]) == ["base_harmful", "frac0-s0", "frac10-s0"] and second["cells"] == ["frac0-s0"]
    # every run's mixture, adapter, config, metrics and results: byte for byte what the inline engine wrote
    same_bytes(stage(tmp_path / "inline"), stage(tmp_path / "slurm"))
    pd.testing.assert_frame_equal(inline.results, again.results)
    markers = {json.loads(p.read_text())["job"] for p in cells.glob("*.done.json")}
    # finished cells are skipped whatever engine ran them: the inline engine runs nothing here
    monkeypatch.setattr(ab.engine, "run_cell", lambda *a, **k: pytest.fail("a finished cell ran again"))
    run_in(tmp_path / "slurm", grid(organism, **FRACTION_GRID), monkeypatch)
    with capsys.disabled():
        print(f"\nSLURM grid test: {time.monotonic() - started:.0f} s wall; jobs {slurm_jobs(tmp_path / 'slurm')}")
        print(f"cells finished by jobs {sorted(markers)}")


def same_bytes(a: Path, b: Path) -> None:
    """The run folders of two grids hold the same bytes where results live (wall times and logs aside)."""
    for run in ("base_harmful", "frac0-s0", "frac10-s0"):
        for name in EVALUATED if run == "base_harmful" else TRAINED + EVALUATED:
            assert (a / "runs" / run / name).read_bytes() == (b / "runs" / run / name).read_bytes(), (run, name)
    assert (a / "results.csv").read_bytes() == (b / "results.csv").read_bytes()


def cli(folder: Path, preset: Path, *flags: str) -> subprocess.Popen:
    """`python -m mllm_safety.ablations --preset FILE` started in folder; its output goes to driver.log_path."""
    log = folder / f"driver-{len(list(folder.glob('driver-*.log')))}.log"
    cmd = [sys.executable, "-m", "mllm_safety.ablations", "--preset", str(preset), *flags]
    driver = subprocess.Popen(cmd, cwd=folder, stdout=log.open("w"), stderr=subprocess.STDOUT, env=dict(os.environ))
    driver.log_path = log
    return driver


def wait_for(check, what: str, driver: subprocess.Popen, timeout: float = 300.0):
    """Poll check() until it holds; fail at once when the driver ended first (with the end of its output)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if found := check():
            return found
        if driver.poll() is not None:
            pytest.fail(f"the driver ended ({driver.returncode}) before {what}: {driver.log_path.read_text()[-3000:]}")
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def preset_file(folder: Path, organism, **values) -> Path:
    """A preset file `grid.yaml` (runs in runs/grid/) built on the smoke preset."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump({"base": "smoke", "runs_root": "runs", **organism, **values}))
    return path


def test_reattach_then_scancel_mid_training_then_resume_from_the_checkpoint(slurm, organism, tmp_path, capsys):
    started = time.monotonic()
    one = dict(studies=["fraction"], fractions=[0.1], fraction_seeds=1, max_steps=400, save_steps=5)
    preset, cells = preset_file(tmp_path, organism, **one, **SLURM), stage(tmp_path, "grid") / "cells"
    train = stage(tmp_path, "grid") / "runs/frac10-s0/03_qlora_finetune/mix"
    first = cli(tmp_path, preset)
    wait_for(lambda: list((train / "checkpoints").glob("checkpoint-*/trainer_state.json")), "a checkpoint", first)
    job = read_record(cells)["cells"]["frac10-s0"]["job"]  # <array>_<task>
    # the same command while the array runs: it re-attaches, it does not submit again
    second = cli(tmp_path, preset)
    wait_for(lambda: "re-attached" in second.log_path.read_text(), "the second command to re-attach", second, 120)
    assert len(slurm_jobs(tmp_path, "grid")) == 1
    subprocess.run(["scancel", job], check=True)
    assert first.wait(120) == 2 and second.wait(120) == 2
    for driver in (first, second):
        text = driver.log_path.read_text()
        assert "| frac10-s0" in text and "CANCELLED" in text and "cells failed (frac10-s0)" in text, text[-2000:]
    # run again: only the cancelled cell is submitted, and its training resumes from the newest checkpoint
    third = cli(tmp_path, preset)
    assert third.wait(600) == 0, third.log_path.read_text()[-3000:]
    metrics = json.loads((train / "metrics.json").read_text())
    assert metrics["resumed_from_step"] >= 5 and metrics["steps"] == 400
    arrays = read_record(cells)["arrays"]
    assert len(arrays) == 2 and arrays[1]["cells"] == ["frac10-s0"]
    with capsys.disabled():
        jobs = slurm_jobs(tmp_path, "grid")
        print(f"\nSLURM cancel/resume test: {time.monotonic() - started:.0f} s wall; jobs {jobs} (cancelled {job})")
        print(f"resumed from step {metrics['resumed_from_step']} of {metrics['steps']}")


def test_a_preempted_cell_is_requeued_by_submitit_and_resumes_from_its_checkpoint(slurm, organism, tmp_path, capsys):
    """USR2 is what SLURM sends before a time limit (submitit asks for it) or a preemption: submitit checkpoints the
    call, requeues the same job, and the cell resumes training from its newest checkpoint; the driver sees it end."""
    started = time.monotonic()
    one = dict(studies=["fraction"], fractions=[0.1], fraction_seeds=1, max_steps=200, save_steps=5)
    preset, cells = preset_file(tmp_path, organism, **one, **SLURM), stage(tmp_path, "grid") / "cells"
    train = stage(tmp_path, "grid") / "runs/frac10-s0/03_qlora_finetune/mix"
    driver = cli(tmp_path, preset)
    wait_for(lambda: list((train / "checkpoints").glob("checkpoint-*/trainer_state.json")), "a checkpoint", driver)
    job = read_record(cells)["cells"]["frac10-s0"]["job"]
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    assert driver.wait(600) == 0, driver.log_path.read_text()[-3000:]
    metrics = json.loads((train / "metrics.json").read_text())
    assert metrics["resumed_from_step"] >= 5 and metrics["steps"] == 200
    out = (cells / "jobs" / f"{job}_0_log.out").read_text()  # submitit's own log lines
    assert f"Requeued job {job}" in out and len(slurm_jobs(tmp_path, "grid")) == 1  # the same job, not a new one
    with capsys.disabled():
        print(
            f"\nSLURM requeue test: {time.monotonic() - started:.0f} s wall; job {job} requeued, resumed from step "
            f"{metrics['resumed_from_step']}"
        )


def test_cancel_stops_the_grids_jobs(slurm, organism, tmp_path, capsys):
    held = dict(FRACTION_GRID, slurm_additional={"hold": True})  # jobs that stay queued until cancelled
    preset, cells = preset_file(tmp_path, organism, **held, **SLURM), stage(tmp_path, "grid") / "cells"
    driver = cli(tmp_path, preset)
    wait_for(lambda: read_record(cells).get("arrays"), "the submission record", driver, 120)
    jobs = [c["job"] for c in read_record(cells)["cells"].values()]
    assert set(job_states(jobs).values()) == {"PENDING"}
    cancel = [sys.executable, "-m", "mllm_safety.ablations", "--preset", str(preset), "--cancel"]
    out = subprocess.run(cancel, cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0 and f"cancelled SLURM job(s) {jobs[0].split('_')[0]}" in out.stdout, out.stderr
    assert driver.wait(120) == 2
    assert set(job_states(jobs).values()) == {"CANCELLED"}
    assert "3 of 3 cells failed" in driver.log_path.read_text()
    with capsys.disabled():
        print(f"\nSLURM --cancel test: held jobs {jobs} cancelled")


def test_the_local_pool_gives_the_inline_run_folders(organism, tmp_path, monkeypatch):
    """Two spawned workers, cpu_count // 2 threads each: the same bytes as the inline engine on as many threads."""
    run_in(tmp_path / "inline", grid(organism, **FRACTION_GRID), monkeypatch, THREADS)
    run_in(tmp_path / "local", grid(organism, **FRACTION_GRID, executor="local", workers=2), monkeypatch)
    local = stage(tmp_path / "local")
    same_bytes(stage(tmp_path / "inline"), local)
    done = [json.loads(p.read_text()) for p in (local / "cells").glob("*.done.json")]
    assert {d["engine"] for d in done} == {"local"} and {d["threads"] for d in done} == {THREADS}


def test_the_threads_key_gives_every_engine_the_same_bytes(organism, tmp_path, monkeypatch):
    """`threads` fixes each cell's torch threads: the inline engine in a driver of two threads, told one, writes what
    two local workers of one thread write, and its driver gets its two threads back."""
    inline = run_in(tmp_path / "inline", grid(organism, **FRACTION_GRID, threads=1), monkeypatch, threads=2)
    local = run_in(tmp_path / "local", grid(organism, **FRACTION_GRID, executor="local", threads=1), monkeypatch)
    same_bytes(stage(tmp_path / "inline"), stage(tmp_path / "local"))
    pd.testing.assert_frame_equal(inline.results, local.results)
    for engine in ("inline", "local"):
        done = [json.loads(p.read_text()) for p in (stage(tmp_path / engine) / "cells").glob("*.done.json")]
        assert {d["threads"] for d in done} == {1}, engine


def test_engine_keys_are_checked_when_the_preset_is_read():
    with pytest.raises(DataFormatError, match=r"executor: Input should be 'inline', 'local' or 'slurm'"):
        Preset.load("smoke", executor="kubernetes")
    with pytest.raises(DataFormatError, match=r"'slurm_partitions' \(did you mean 'slurm_partition'\?\)"):
        Preset.load("smoke", slurm_partitions="gpu")
    engine = Preset.load("smoke", executor="slurm", slurm_time_min=1, slurm_additional={"qos": "high"}).engine
    sbatch = parameters(engine, "mllm-smoke")
    assert sbatch["timeout_min"] == 1 and sbatch["slurm_signal_delay_s"] == 15  # the warning fits inside the limit
    assert sbatch["slurm_additional_parameters"] == {"qos": "high"} and "slurm_partition" not in sbatch


def test_a_partition_sbatch_refuses_is_one_line_naming_the_keys(slurm, organism, tmp_path, monkeypatch):
    preset = grid(organism, **FRACTION_GRID, **SLURM, slurm_partition="nope")
    with pytest.raises(SubmissionError, match=r"sbatch refused the cells of .*nope.*Fix: check the preset's slurm_"):
        run_in(tmp_path, preset, monkeypatch)


def threads_seen(spec: list) -> None:
    spec.append(torch.get_num_threads())


def test_a_cell_runs_on_its_threads_and_gives_the_driver_its_own_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen: list[int] = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        Runner(Task("c", threads_seen, seen, {}), "d", tmp_path, "inline", threads=1)()
        assert seen == [1] and torch.get_num_threads() == 2
        assert json.loads((tmp_path / "c.done.json").read_text())["threads"] == 1
    finally:
        torch.set_num_threads(before)


def gpu_seen(path: str) -> None:
    """A cell that records the GPU its worker was given and the worker's pid."""
    Path(path).write_text(json.dumps([os.environ.get("CUDA_VISIBLE_DEVICES"), os.getpid()]))


def test_the_local_pool_gives_each_worker_a_gpu_of_its_own(tmp_path, monkeypatch):
    """On a GPU machine each local worker is pinned to one GPU for its life; here the GPUs are named, not real
    (visible_gpus patched in the driver), and the cells report what their workers were given."""
    from mllm_safety.core import executors
    from mllm_safety.core.config import ExecutorConfig

    monkeypatch.setattr(executors, "visible_gpus", lambda: ["3", "5"])
    monkeypatch.chdir(tmp_path)
    tasks = [Task(f"c{k}", gpu_seen, str(tmp_path / f"c{k}.json"), {"k": k}) for k in range(6)]
    executors.run_grid(tasks, ExecutorConfig(executor="local", workers=4, threads=1), tmp_path / "cells")
    seen = [json.loads((tmp_path / f"c{k}.json").read_text()) for k in range(6)]
    by_worker = {pid: {gpu for gpu, p in seen if p == pid} for _, pid in seen}
    assert len(by_worker) <= 2  # no more workers than GPUs, though 4 were asked for
    assert all(len(gpus) == 1 for gpus in by_worker.values())  # a worker keeps its GPU
    assert {gpu for gpu, _ in seen} <= {"3", "5"} and len({next(iter(g)) for g in by_worker.values()}) == len(by_worker)
