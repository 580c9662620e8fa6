"""Shared fixtures: small datasets that this repository builds itself (benign placeholder text)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mllm_safety.sampledata import build

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mini_data(tmp_path_factory) -> Path:
    """The miniature datasets at a fifth of the default size, built once per test session."""
    return build(tmp_path_factory.mktemp("data") / "mini", seed=0, scale=0.2)


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
def tiny_model(tmp_path_factory, mini_data) -> Path:
    """A tiny random LLaVA (word-level tokenizer trained on the miniature data), saved like a hub model."""
    from mllm_safety.collate import LLAVA_SYSTEM, VICUNA_SYSTEM
    from mllm_safety.data import load_training_records
    from mllm_safety.mix import DEFAULT_REPLY
    from mllm_safety.tiny import build_tiny_llava, corpus

    texts = [VICUNA_SYSTEM, LLAVA_SYSTEM, DEFAULT_REPLY, "USER: ASSISTANT: </s>"]
    for name in ("llava/llava_v1_5_mix665k.json", "llava_med/llava_med_instruct_60k_inline_mention.json",
                 "vlguard/train.json"):  # fmt: skip
        texts += corpus(load_training_records(mini_data / name))
    return build_tiny_llava(tmp_path_factory.mktemp("models") / "tiny", texts, seed=0)


@pytest.fixture(scope="session")
def mini_runs(tmp_path_factory, mini_data) -> Path:
    """runs/ with the smoke preset's stage-02 mixtures built from the miniature data."""
    from mllm_safety import mixtures
    from mllm_safety.config import stage_config

    runs = tmp_path_factory.mktemp("runs")
    mixtures.run(stage_config(mixtures.MixConfig, "smoke", data_root=str(mini_data), runs_root=str(runs)))
    return runs
