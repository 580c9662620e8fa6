"""The wheels the GPU check carries (`make gpu-wheels`): what the lent GPU machine lacks, for its Python.

That machine has no network. Its image (read from the workplace's description of it, November 2026) has Python
3.12, torch 2.11 built for CUDA 13.0, transformers 5.17, accelerate 1.15, tokenizers 0.23.2, huggingface_hub 1.33,
safetensors 0.8, numpy, pillow, pyyaml, pandas, filelock, tqdm and psutil, but no bitsandbytes and no pydantic.
`CARRIED` lists what the check imports that is missing there or not at our pinned version, each with the reason;
everything else is used as the machine has it. torch cannot travel (it is gigabytes) and stays the machine's.

bitsandbytes' wheel holds a library for each CUDA and ROCm release (43 MB); the carried copy keeps the one for the
machine's CUDA and the CPU one, with its RECORD rewritten, so that the folder stays far below the 64 MiB a call
carries (the working tree travels in the same 64 MiB).

    python -m mllm_safety.tools.gpu_wheels --out .gpu/wheels
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata as md
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..core.cli import run_cli

PYTHON = "3.12"
CUDA = "130"  # torch 2.11.0+cu130 there: bitsandbytes loads libbitsandbytes_cuda130.so
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (28, 27, 24, 17)] + ["manylinux2014_x86_64", "manylinux1_x86_64"]
# distribution -> why it travels; the version is the one installed here (the pins the tests ran with)
CARRIED = {
    "bitsandbytes": "not installed there (NF4 quantization)",
    "pydantic": "not installed there (the configs' validation)",
    "pydantic-core": "pydantic's compiled half, at the version pydantic pins",
    "annotated-types": "a requirement of pydantic",
    "typing-inspection": "a requirement of pydantic",
    "typing-extensions": "pydantic needs >= 4.16; the version there is not recorded",
    "transformers": "5.17 there; the code is pinned to and tested with ours",
    "regex": "transformers needs >= 2025.10.22; the version there is not recorded",
    "peft": "installed there at a version not recorded; ours is pinned",
}
BUDGET_MIB = 40  # the carried wheels; the rest of the 64 MiB is the working tree and the replicas' files


def download(name: str, version: str, folder: Path) -> Path:
    """One wheel for the machine's Python and platform, without its requirements (CARRIED names each one)."""
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    target = ["--python-version", PYTHON, "--implementation", "cp", *platforms]
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    cmd = [*pip, *target, "-d", str(folder), f"{name}=={version}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"pip download {name}=={version} failed: {done.stderr.strip().splitlines()[-1]}")
    key = name.replace("-", "_").lower()
    return next(p for p in folder.glob("*.whl") if p.name.lower().startswith(key + "-"))


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def keep_one_cuda(wheel: Path, cuda: str) -> None:
    """Rewrite a bitsandbytes wheel in place without the native libraries of other CUDA and ROCm releases."""

    def wanted(name: str) -> bool:
        lib = name.rsplit("/", 1)[-1]
        if not lib.startswith("libbitsandbytes_"):
            return True
        return lib.startswith((f"libbitsandbytes_cuda{cuda}.", "libbitsandbytes_cpu."))

    with zipfile.ZipFile(wheel) as src:
        kept = {
            i.filename: src.read(i) for i in src.infolist() if wanted(i.filename) and not i.filename.endswith("RECORD")
        }
        record = next(i.filename for i in src.infolist() if i.filename.endswith(".dist-info/RECORD"))
    lines = [record_line(n, d) for n, d in kept.items()] + [f"{record},,"]
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in kept.items():
            out.writestr(name, data)
        out.writestr(record, "\n".join(lines) + "\n")
    tmp.replace(wheel)


def build(out: Path) -> list[Path]:
    """Every CARRIED wheel at the version installed here, into out/ (replaced whole, written beside it first)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        folder = Path(tmp) / "wheels"
        folder.mkdir()
        wheels = [download(name, md.version(name), folder) for name in CARRIED]
        keep_one_cuda(next(w for w in wheels if w.name.startswith("bitsandbytes-")), CUDA)
        size = sum(w.stat().st_size for w in wheels) / 2**20
        if size > BUDGET_MIB:
            raise RuntimeError(f"the carried wheels take {size:.1f} MiB, above the {BUDGET_MIB} MiB budget")
        shutil.rmtree(out, ignore_errors=True)
        folder.rename(out)
    return sorted(out.glob("*.whl"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mllm_safety.tools.gpu_wheels", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path(".gpu/wheels"))
    args = p.parse_args(argv)

    def go() -> None:
        wheels = build(args.out)
        for w in wheels:
            print(f"{w.stat().st_size / 2**20:7.2f} MiB  {w.name}")
        print(f"{sum(w.stat().st_size for w in wheels) / 2**20:7.2f} MiB  in {args.out}")

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
