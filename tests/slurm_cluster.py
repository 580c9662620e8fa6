"""A real one-node SLURM cluster for the tests: munged, slurmctld and slurmd started from a temporary folder.

`python tests/slurm_cluster.py check` (what `make slurm-up` runs) installs the packages when slurmctld is missing,
starts the cluster, waits until `sinfo` shows the node idle, runs one job and stops the daemons by pid. The pytest
fixture in tests/test_cluster.py starts one with `start()` for the session and stops it with `stop()`.
Nothing here touches /etc: the config, the munge key, the sockets, the state and the logs all live in `folder`, and
the clients find the cluster through the SLURM_CONF environment variable.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
DAEMONS = ("munged", "slurmctld", "slurmd")


class ClusterError(RuntimeError):
    """This machine cannot run the test cluster; the message says why and where the logs are."""


@dataclass
class Cluster:
    folder: Path
    conf: Path
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}


def install() -> None:
    """apt-get the SLURM and munge packages when slurmctld is missing (root only, as on CI)."""
    if shutil.which("slurmctld") and shutil.which("slurmd") and shutil.which("munged"):
        return
    if os.geteuid() != 0:
        raise ClusterError(
            f"slurmctld is not installed and this is not root: run `apt-get install {' '.join(PACKAGES)}`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", *PACKAGES]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode:
            raise ClusterError(f"`{' '.join(cmd)}` failed: {done.stderr.strip().splitlines()[-1:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_line() -> str:
    """This machine as slurmd sees it: `NodeName=... CPUs=... RealMemory=...` (from `slurmd -C`)."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("NodeName="))
    return line + " NodeAddr=127.0.0.1 State=UNKNOWN"


def write_conf(folder: Path) -> Path:
    """slurm.conf for one node: the linuxproc tracker, no task plugin, cons_tres, every path in folder."""
    node = node_line()
    name = node.split()[0].split("=", 1)[1]
    user = os.environ.get("USER") or "root"
    lines = [
        "ClusterName=mllmtest",
        f"SlurmctldHost={socket.gethostname()}(127.0.0.1)",
        f"SlurmUser={user}",
        f"SlurmctldPort={free_port()}",
        f"SlurmdPort={free_port()}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={folder / 'munge.sock'}",
        f"StateSaveLocation={folder / 'state'}",
        f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
        f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'slurmctld.log'}",
        f"SlurmdLogFile={folder / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "DefMemPerCPU=1024",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=sched_interval=2",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "JobRequeue=1",
        "MinJobAge=600",
        "KillWait=5",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        node,
        f"PartitionName=debug Nodes={name} Default=YES MaxTime=INFINITE State=UP",
    ]
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    conf = folder / "slurm.conf"
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return conf


def start_munge(folder: Path) -> int:
    """munged on its own socket, with a fresh key (0400, owned by whoever runs it)."""
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    pid_file = folder / "munged.pid"
    cmd = [
        "munged",
        "--force",
        f"--socket={folder / 'munge.sock'}",
        f"--key-file={key}",
        f"--pid-file={pid_file}",
        f"--log-file={folder / 'munged.log'}",
        f"--seed-file={folder / 'munged.seed'}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise ClusterError(f"munged did not start: {done.stderr.strip()} (log: {folder / 'munged.log'})")
    return read_pid(pid_file, "munged", folder / "munged.log")


def read_pid(path: Path, name: str, log: Path, wait: float = 15.0) -> int:
    end = time.monotonic() + wait
    while time.monotonic() < end:
        if path.is_file() and path.read_text().strip():
            return int(path.read_text().split()[0])
        time.sleep(0.2)
    raise ClusterError(f"{name} wrote no pid file {path}; see {log}")


def start(folder: Path | None = None, timeout: float = 60.0) -> Cluster:
    """Install when needed, then start munged, slurmctld and slurmd; return once the node is idle."""
    install()
    folder = Path(folder or tempfile.mkdtemp(prefix="slurm-"))
    cluster = Cluster(folder, write_conf(folder))
    try:
        cluster.pids["munged"] = start_munge(folder)
        for daemon in ("slurmctld", "slurmd"):
            log = folder / f"{daemon}.log"
            done = subprocess.run([daemon, "-f", str(cluster.conf)], capture_output=True, text=True, env=cluster.env)
            if done.returncode:
                raise ClusterError(f"{daemon} did not start: {done.stderr.strip()} (log: {log})")
            cluster.pids[daemon] = read_pid(folder / f"{daemon}.pid", daemon, log)
        wait_idle(cluster, timeout)
    except BaseException:
        stop(cluster)
        raise
    return cluster


def wait_idle(cluster: Cluster, timeout: float) -> None:
    end, state = time.monotonic() + timeout, ""
    while time.monotonic() < end:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=cluster.env)
        state = out.stdout.strip() or out.stderr.strip()
        if state == "idle":
            return
        time.sleep(1)
    raise ClusterError(f"the node is not idle after {timeout:.0f} s (sinfo: {state!r}); see {cluster.folder}/*.log")


def stop(cluster: Cluster, wait: float = 20.0) -> None:
    """Stop the daemons this cluster started, by their pids (slurmd first, munged last)."""
    for name in reversed(DAEMONS):
        pid = cluster.pids.pop(name, None)
        if pid is None:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        end = time.monotonic() + wait
        while time.monotonic() < end and alive(pid):
            time.sleep(0.2)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.is_file() and stat.read_text().split(") ", 1)[-1].startswith("Z"))


def check() -> int:
    """Start the cluster, run one job through sbatch, stop it: `make slurm-up`."""
    started = time.monotonic()
    try:
        cluster = start()
    except (ClusterError, subprocess.CalledProcessError, OSError) as e:
        print(f"slurm-up: this machine cannot run SLURM: {e}", file=sys.stderr)
        return 1
    try:
        out = subprocess.run(
            ["sbatch", "--wait", "-o", str(cluster.folder / "hello.out"), "--wrap", "hostname"],
            capture_output=True,
            text=True,
            env=cluster.env,
            timeout=120,
        )
        ok = out.returncode == 0
        print(f"slurm-up: {out.stdout.strip() or out.stderr.strip()} in {time.monotonic() - started:.1f} s")
    finally:
        stop(cluster)
        shutil.rmtree(cluster.folder, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(check())
