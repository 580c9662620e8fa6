"""The numeric pins (core.numerics): importing the package sets them before torch loads, the switch turns them
off, a variable the user set wins, and a seeded computation is bit-identical from run to run under the pins."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="the pins are for x86-64 CPUs"
)

PROBE = (
    "import json, mllm_safety, torch\n"
    "from mllm_safety.core import numerics\n"
    "torch.manual_seed(0)\n"
    "net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 8))\n"
    "opt = torch.optim.AdamW(net.parameters(), lr=1e-2)\n"
    "x, y = torch.randn(512, 64), torch.randn(512, 8)\n"
    "for _ in range(30):\n"
    "    opt.zero_grad(); loss = ((net(x) - y) ** 2).mean(); loss.backward(); opt.step()\n"
    "print(json.dumps({**numerics.describe(), 'loss': loss.item().hex()}))\n"
)


def probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("MLLM_SAFETY_NUMERICS", *PINS_NAMES)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


PINS_NAMES = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")


def test_importing_the_package_pins_the_kernels_before_torch_loads():
    got = probe()
    assert got["numerics"] == "pinned" and got["cpu_capability"] == "AVX2"
    assert (got["ATEN_CPU_CAPABILITY"], got["MKL_CBWR"], got["ONEDNN_MAX_CPU_ISA"]) == ("avx2", "AVX2", "AVX2")


def test_native_sets_no_pin_and_a_users_variable_wins():
    native = probe(MLLM_SAFETY_NUMERICS="native")
    assert native["numerics"] == "native" and native["ATEN_CPU_CAPABILITY"] == "" and native["MKL_CBWR"] == ""
    own = probe(ATEN_CPU_CAPABILITY="default")
    assert own["ATEN_CPU_CAPABILITY"] == "default" and own["cpu_capability"] == "DEFAULT" and own["MKL_CBWR"] == "AVX2"


def test_a_seeded_training_is_bit_identical_under_the_pins():
    first, second = probe(), probe()
    assert first["loss"] == second["loss"]
