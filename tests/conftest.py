"""Shared fixtures, all built by this repository: the organism's world (its datasets and benchmarks in the real
formats), a tiny random LLaVA whose tokenizer knows the world, and the smoke preset's stage-02 mixtures."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from mllm_safety.core.preset import Preset
from mllm_safety.core.world import build_world

REPO = Path(__file__).resolve().parents[1]
# the digest cache (core.fingerprints) of this test session, subprocesses included: never the user's own
os.environ.setdefault("MLLM_SAFETY_CACHE", tempfile.mkdtemp(prefix="mllm-safety-digests-"))


@pytest.fixture(scope="session")
def world_data(tmp_path_factory) -> Path:
    """The organism's world (seed 0), built once per test session (about a second)."""
    return build_world(tmp_path_factory.mktemp("data") / "world", seed=0)


def real_paths(paths):
    """The paths that do not pass through pytest's `<name>current` links (each folder counted once)."""
    return [p for p in paths if not any(part.endswith("current") for part in p.parts)]


def pytest_terminal_summary(terminalreporter, config):
    """Name the replicas this session built and tested (each writes replica.json naming the checkpoint)."""
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None:
        return
    built: dict[str, int] = {}
    for marker in real_paths(factory.getbasetemp().rglob("replica.json")):
        info = json.loads(marker.read_text(encoding="utf-8"))
        key = f"{info['family']} ({info['checkpoint']})"
        built[key] = built.get(key, 0) + 1
    if built:
        terminalreporter.write_sep("-", "replicas exercised: real tokenizer, chat template and processor files")
        for key, count in sorted(built.items()):
            terminalreporter.write_line(f"{key}: built {count}x")
    for report in real_paths(factory.getbasetemp().glob("test_make_gpu_check_rehearsed*/out/gpu_check.json")):
        info = json.loads(report.read_text(encoding="utf-8"))
        terminalreporter.write_sep("-", "GPU check rehearsed on the CPU (make gpu-check at --scale tiny)")
        terminalreporter.write_line(f"{info['device']}: {info['wall_s']} s, {len(info['errors'])} part(s) failed")


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def conv(*pairs: tuple[str, str]) -> list[dict]:
    """A LLaVA conversation from (question, answer) pairs."""
    out = []
    for q, a in pairs:
        out += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    return out


def rec(rid, *pairs, image: str | None = "img.jpg", **extra) -> dict:
    """A LLaVA record; the first question gets the <image> tag when there is an image."""
    pairs = list(pairs) or [("What is this?", "A cup.")]
    if image:
        pairs[0] = ("<image>\n" + pairs[0][0], pairs[0][1])
    r = {"id": rid, "conversations": conv(*pairs), **extra}
    if image:
        r["image"] = image
    return r


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random LLaVA (CLIP tower, word-level tokenizer trained on the world's texts), saved like a hub model."""
    from mllm_safety.core.prompts import LLAVA_SYSTEM, VICUNA_SYSTEM
    from mllm_safety.core.tiny import build_tiny_llava
    from mllm_safety.core.world import world_texts

    texts = [VICUNA_SYSTEM, LLAVA_SYSTEM, "USER: ASSISTANT: </s>", *world_texts()]
    return build_tiny_llava(tmp_path_factory.mktemp("models") / "tiny", texts, seed=0)


@pytest.fixture(scope="session")
def mini_runs(tmp_path_factory, world_data) -> Path:
    """runs/ with the smoke preset's stage-02 mixtures built from the world."""
    from mllm_safety import mix_rejection_data

    runs = tmp_path_factory.mktemp("runs")
    mix_rejection_data.run(Preset.load("smoke", data_root=str(world_data), runs_root=str(runs)))
    return runs


# a barely trained organism (seconds): the sizes every test that builds one uses
SMOKE_ORGANISM = dict(
    lm_hidden=64, vit_hidden=32, text_epochs=1, vision_steps=3, caption_epochs=1, caption_renders=9, instruct_epochs=1
)
