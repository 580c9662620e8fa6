"""Presets and run folders: unknown keys and bad values are errors naming the key; stage configs pick their keys;
a run folder is reused, resumed or replaced by one rule."""

from __future__ import annotations

import pytest

from mllm_safety.core.config import (
    BiasConfig,
    TrainConfig,
    load_preset,
    shipped_presets,
    stage_dir,
    stage_folder,
    validate_preset,
)
from mllm_safety.core.files import DataFormatError
from mllm_safety.core.runs import is_finished, start_run

PRESETS = shipped_presets()  # every file in params/


@pytest.mark.parametrize("preset", PRESETS)
def test_shipped_presets_are_valid(preset):
    assert validate_preset(preset)


def test_unknown_key_is_an_error_with_a_suggestion(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("data_root: x\ntop_kk: 3\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"unknown key\(s\) 'top_kk' \(did you mean 'top_k'\?\)"):
        load_preset(str(path))


def test_bad_values_are_all_named_in_one_message(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("learning_rate: 1e-3\nlora_r: 0\nquantization: nf5\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as err:
        validate_preset(str(path))
    message = str(err.value)
    assert str(path) in message and "lora_r" in message and "quantization" in message
    assert "learning_rate" not in message  # YAML's 1e-3 is a string; it is read as the number it means
    assert TrainConfig.from_params({"learning_rate": "1e-3"}).learning_rate == pytest.approx(1e-3)


def test_missing_preset_lists_available():
    with pytest.raises(FileNotFoundError, match="available presets: .*toy"):
        load_preset("nope")


def test_stage_config_takes_its_keys_and_the_preset_name(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("data_root: d\ntop_k: 3\nsample_size1: 5\n", encoding="utf-8")
    cfg = BiasConfig.from_preset(str(path))
    assert (cfg.preset, cfg.data_root, cfg.top_k) == ("mine", "d", 3)
    assert cfg.stage_dir == stage_dir("runs", "mine", "data_bias") == stage_dir("runs", "mine", "data_bias")
    assert str(cfg.stage_dir) == "runs/mine/01_data_bias" and stage_folder("qlora_finetune") == "03_qlora_finetune"


def test_a_run_folder_is_reused_resumed_or_replaced_by_one_rule(tmp_path):
    run = tmp_path / "r"
    start_run(run, BiasConfig(top_k=3))
    (run / "partial.txt").write_text("x")
    start_run(run, BiasConfig(top_k=3))  # same config, unfinished: kept, to resume
    assert (run / "partial.txt").is_file() and not is_finished(run, BiasConfig(top_k=3))
    start_run(run, BiasConfig(top_k=4))  # another config, unfinished: a failed run never blocks the corrected one
    assert not (run / "partial.txt").exists()
    (run / "metrics.json").write_text("{}")
    assert is_finished(run, BiasConfig(top_k=4)) and not is_finished(run, BiasConfig(top_k=5))
    with pytest.raises(FileExistsError, match=r"finished run made with a different config \(changed: \['top_k'\]\)"):
        start_run(run, BiasConfig(top_k=5))
    start_run(run, BiasConfig(top_k=5), overwrite=True)
    assert not (run / "metrics.json").exists()


def test_every_key_is_documented_in_docs_presets_md():
    from conftest import REPO

    from mllm_safety.core.config import known_keys

    text = (REPO / "docs" / "presets.md").read_text(encoding="utf-8")
    assert [k for k in sorted(known_keys()) if f"| `{k}` |" not in text] == []


def test_the_truth_judge_needs_the_world_and_the_headline_judge_must_run(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("judges: [world_truth, paper_strmatch]\nheadline_judge: world_truth\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="world_truth reads the organism's world only; it needs world: true"):
        validate_preset(str(path))
    path.write_text("judges: [paper_strmatch]\nheadline_judge: world_truth\n", encoding="utf-8")
    with pytest.raises(
        DataFormatError, match=r"headline_judge 'world_truth' is not one of judges \['paper_strmatch'\]"
    ):
        validate_preset(str(path))
