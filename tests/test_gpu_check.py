"""The GPU check (make gpu-wheels, make gpu-check), rehearsed on the CPU at tiny scale through the same script, so
that the one call on a borrowed GPU cannot fail on something the CPU could have shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from mllm_safety.tools import gpu_check, gpu_wheels

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu") / "replicas"
    gpu_check.prepare(out)
    return out


def test_the_7b_folders_hold_the_checkpoints_sizes_and_no_weights(replicas):
    # parameter counts from the model cards: llava-hf/llava-1.5-7b-hf 7.06B, Qwen/Qwen2.5-VL-7B-Instruct 8.29B
    expected = {"llava-1.5-7b": 7.06e9, "qwen2.5-vl-7b": 8.29e9}
    for name, count in expected.items():
        folder = replicas / name / "7b"
        assert (folder / "model.safetensors").stat().st_size < 1024  # a header, no tensors
        assert abs(gpu_check.parameter_count(folder) / count - 1) < 0.01, name
        assert (folder / "tokenizer.json").is_file() and (folder / "chat_template.jinja").is_file()


def test_weights_are_drawn_by_name_so_nf4_and_unquantized_loads_hold_the_same_weights(replicas):
    import bitsandbytes.functional as F

    folder = replicas / "llava-1.5-7b" / "tiny"
    plain = gpu_check.load_filled(folder, "none", seed=3)
    nf4 = gpu_check.load_filled(folder, "nf4", seed=3)
    name = "model.language_model.layers.0.mlp.down_proj"
    w = dict(plain.named_modules())[name].weight.detach().float()
    q = dict(nf4.named_modules())[name].weight
    assert type(q).__name__ == "Params4bit" and q.bnb_quantized
    back = F.dequantize_4bit(q.data, q.quant_state).float()
    assert torch.corrcoef(torch.stack([w.flatten(), back.flatten()]))[0, 1] > 0.99  # NF4's error only
    assert abs(float(w.std()) - gpu_check.WEIGHT_STD) < 0.002
    again = gpu_check.load_filled(folder, "none", seed=3)
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), again.parameters(), strict=True))
    other = gpu_check.load_filled(folder, "none", seed=4)
    assert not torch.equal(dict(other.named_modules())[name].weight, dict(plain.named_modules())[name].weight)


def test_make_gpu_check_rehearsed_on_the_cpu(replicas, tmp_path):
    """The script the GPU machine runs, at --scale tiny: every part of both models, no part failing."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "WHEELS": str(tmp_path / "no-wheels"), "REPLICAS": str(replicas)}
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", str(out), "--scale", "tiny"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["errors"] == [], report["errors"]
    assert report["notes"] == gpu_check.NOT_ON_CPU  # what the CPU cannot measure, said in the output
    for name in gpu_check.TARGETS:
        rows = [r for r in report["training"] if r["model"] == name]
        shapes = [(r["samples"], r["micro_batch"], r["attention"]) for r in rows]
        assert shapes == [("typical", 1, "sdpa"), ("typical", 2, "sdpa"), ("worst", 1, "sdpa"), ("typical", 1, "eager")]
        assert all(r["tokens_per_s"] > 0 and r["quantization"] == "nf4" for r in rows)
        assert next(r for r in rows if r["samples"] == "worst")["tokens_per_sample"] == 1024  # max_length filled
        generation = [r for r in report["generation"] if r["model"] == name]
        assert [r["way"] for r in generation] == ["one at a time", "batched, 4 per call"]
        assert all(r["non_empty"] == 4 for r in generation)  # the tokenizer matches the model's vocabulary
        merge = next(m for m in report["merge"] if m["model"] == name)
        assert merge["identical_adapter_vs_no_adapter"] != "4/4"  # the trained adapter changes the answers
    assert "| llava-1.5-7b | typical | nf4 | 1 |" in (out / "gpu_check.md").read_text()
    assert not (out / "work").exists()


def test_gpu_wheels_carry_what_the_machine_lacks_within_the_budget(tmp_path):
    wheels = gpu_wheels.build(tmp_path / "wheels")
    names = {w.name.split("-")[0].lower().replace("_", "-") for w in wheels}
    assert names == set(gpu_wheels.CARRIED)
    assert all("cp312" in w.name or "py3-none" in w.name for w in wheels)  # the machine's Python 3.12
    total = sum(w.stat().st_size for w in wheels) / 2**20
    assert total < gpu_wheels.BUDGET_MIB, total
    bnb = next(w for w in wheels if w.name.startswith("bitsandbytes-"))
    libs = sorted(n.rsplit("/", 1)[-1] for n in zipfile.ZipFile(bnb).namelist() if "/libbitsandbytes_" in n)
    assert libs == ["libbitsandbytes_cpu.so", "libbitsandbytes_cuda130.so"]
    site = tmp_path / "site"  # the trimmed wheel installs as the GPU machine installs it (RECORD consistent)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(site),
                    str(bnb)], check=True)  # fmt: skip
    assert (site / "bitsandbytes" / "libbitsandbytes_cuda130.so").is_file()
    print(f"make gpu-wheels: {total:.1f} MiB")


def test_the_memory_arithmetic_worked_by_hand(replicas):
    """Qwen2.5-VL-7B, 4 samples of 4096 tokens: logits 4 x 4096 x 152064 entries x 10 bytes (bf16, the fp32 copy,
    the saved log-softmax) = 24.9e9 bytes = 23.2 GiB; checkpointed layer inputs 28 x 4 x 4096 x 3584 x 2 bytes =
    3.29e9 bytes = 3.1 GiB; LoRA r 128 on a layer's 7 linears: 128 x (2 x 7168 + 2 x 4096 + 3 x 22528) = 11.5M
    parameters, x 28 layers = 322.9M, at 16 bytes = 4.8 GiB, plus the trained merger."""
    row = gpu_check.memory_estimate("qwen2.5-vl-7b", replicas / "qwen2.5-vl-7b" / "7b")
    assert (row["micro_batch"], row["max_length"]) == (4, 4096)
    assert (row["logits"], row["layer inputs"]) == (23.2, 3.1)
    assert 4.8 < row["trained state"] < 6.0


def test_a_part_that_would_start_after_the_time_budget_is_recorded_not_run(replicas, tmp_path):
    report = gpu_check.run(replicas, tmp_path / "out", "tiny", ["qwen2.5-vl-7b"], budget_s=0)
    assert report["training"] == [] and report["merge"] == [] and report["generation"] == []
    assert report["errors"] == [{"part": "qwen2.5-vl-7b training", "error": gpu_check.OVER_BUDGET, "where": ""}]
    saved = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert saved["errors"] == report["errors"] and "deadline" not in saved
