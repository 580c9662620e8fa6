"""One set of numeric kernels on every x86-64 CPU, so that a seed builds the same organism on any machine.

PyTorch chooses its CPU kernels by the processor it finds: its own vectorised kernels (ATen), its BLAS (MKL) and
its oneDNN primitives each have AVX-512 and AVX2 versions, which add numbers in different orders. Training
amplifies the last-bit differences, so the same seed, thread count and packages give a different organism on an
AVX-512 CPU than on an AVX2 one. Pinned, every library takes its AVX2 path (which every x86-64 CPU of the last
decade has): the build depends on the seed and the thread count only.

The pins are environment variables that the libraries read when they load, so `pin()` runs when `mllm_safety` is
imported, before torch. They are defaults: a variable already set wins, and `MLLM_SAFETY_NUMERICS=native` leaves
every library on the CPU's own kernels (faster on AVX-512, not comparable across machines). `describe()` says
what the running process actually uses; stage 00 records it beside the build.
"""

from __future__ import annotations

import os
import platform
from typing import Any

SWITCH = "MLLM_SAFETY_NUMERICS"  # "pinned" (default) or "native"
PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",  # PyTorch's vectorised CPU kernels
    "MKL_CBWR": "AVX2",  # MKL's conditional numerical reproducibility: its AVX2 code path
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN (convolutions, e.g. the vision tower's patch embedding)
}


def pin() -> dict[str, str]:
    """Set the pins that are not set yet (x86-64 only; `native` sets none); returns those that were set here."""
    if os.environ.get(SWITCH, "pinned") == "native" or platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    added = {k: v for k, v in PINS.items() if k not in os.environ}
    os.environ.update(added)
    return added


def describe() -> dict[str, Any]:
    """The numeric setting this process runs with: the switch, the pins in the environment and torch's own CPU
    capability (what its kernels really use; a pin set after torch loaded has no effect, and this shows it)."""
    import torch

    return {
        "numerics": os.environ.get(SWITCH, "pinned"),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        **{k: os.environ.get(k, "") for k in PINS},
    }
