"""Presets: unknown keys are errors; stage configs pick their keys; run folders refuse a changed config."""

from __future__ import annotations

import pytest

from mllm_safety.bias import BiasConfig
from mllm_safety.config import load_preset, prepare_run_dir, stage_config
from mllm_safety.files import DataFormatError
from mllm_safety.pipeline import known_keys

PRESETS = ["toy", "smoke", "organism", "llava-1.5-7b", "llava-1.5-7b-4gpu", "llava-next-7b"]


@pytest.mark.parametrize("preset", PRESETS)
def test_shipped_presets_have_only_known_keys(preset):
    assert load_preset(preset, known_keys())


def test_unknown_key_is_an_error(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("data_root: x\ntop_kk: 3\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"unknown key\(s\) \['top_kk'\]"):
        load_preset(str(path), known_keys())


def test_missing_preset_lists_available():
    with pytest.raises(FileNotFoundError, match="available presets: .*toy"):
        load_preset("nope")


def test_stage_config_takes_its_keys_and_the_preset_name(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("data_root: d\ntop_k: 3\nsample_size1: 5\n", encoding="utf-8")
    cfg = stage_config(BiasConfig, str(path))
    assert (cfg.preset, cfg.data_root, cfg.top_k) == ("mine", "d", 3)


def test_run_dir_refuses_a_different_config(tmp_path):
    prepare_run_dir(tmp_path / "r", BiasConfig(top_k=3))
    prepare_run_dir(tmp_path / "r", BiasConfig(top_k=3))  # same config: fine
    with pytest.raises(FileExistsError, match=r"different config \(changed: \['top_k'\]\)"):
        prepare_run_dir(tmp_path / "r", BiasConfig(top_k=4))
    prepare_run_dir(tmp_path / "r", BiasConfig(top_k=4), overwrite=True)
