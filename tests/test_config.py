"""Presets and run folders: unknown keys and bad values are errors naming the key; stage configs pick their keys;
a run folder is reused, resumed or replaced by one rule."""

from __future__ import annotations

import pytest

from mllm_safety.core.config import BiasConfig, TrainConfig
from mllm_safety.core.files import DataFormatError
from mllm_safety.core.layout import stage_dir, stage_folder
from mllm_safety.core.preset import Preset, load_preset, shipped_presets, validate_preset
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
    cfg = Preset.load(str(path)).bias
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


def test_a_preset_name_with_dots_keeps_them():
    """qwen2.5-vl-7b runs in runs/qwen2.5-vl-7b/, not runs/qwen2/ (a file stem would cut at the first dot)."""
    assert Preset.load("qwen2.5-vl-7b").name == "qwen2.5-vl-7b"
    assert str(Preset.load("llava-1.5-7b").train.stage_dir) == "runs/llava-1.5-7b/03_qlora_finetune"


def test_a_preset_starts_from_its_base_and_a_loop_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("base: smoke\ntop_k: 3\n", encoding="utf-8")
    preset = Preset.load(str(tmp_path / "a.yaml"))
    assert (preset.bias.top_k, preset.organism.lm_hidden, preset.train.num_epochs) == (3, 64, 1.0)  # smoke's, toy's
    (tmp_path / "b.yaml").write_text("base: c\n", encoding="utf-8")
    (tmp_path / "c.yaml").write_text("base: b\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="bases form a loop"):
        load_preset(str(tmp_path / "b.yaml"))


def test_an_organism_presets_paths_follow_its_name():
    """Renaming the organism preset (pipeline --as) moves its world and its model with it: nothing names toy."""
    other = Preset.from_values("other", load_preset("toy"))
    assert other.organism.model_path == other.studies.model_path == "runs/other/00_model_organism/model"
    assert other.data.data_root == other.eval.data_root == "data/other"
    assert Preset.load("toy").replace(runs_root="elsewhere").train.model_path == "elsewhere/toy/00_model_organism/model"
    assert Preset.load("llava-1.5-7b").train.model_path == "llava-hf/llava-1.5-7b-hf"  # real presets name theirs


def test_official_in_a_mixture_list_is_the_official_mixture_for_the_sizes():
    toy = Preset.load("toy")
    assert toy.train.train_mixes[0] == "40_llava_med_instruct_60k_inline_mention_100_llava_v1_5_mix665k"
    resized = toy.replace(sample_size1=10)
    assert (
        resized.train.train_mixes[0]
        == resized.eval.eval_adapters[0]
        == ("10_llava_med_instruct_60k_inline_mention_100_llava_v1_5_mix665k")
    )


def test_pipeline_as_another_name_builds_its_own_organism(tmp_path, monkeypatch):
    """`pipeline run --preset toy --as other --stages 00` once rebuilt into toy's folder (the preset named
    runs/toy/... as a literal): the derived preset now names nothing of toy's."""
    from mllm_safety.pipeline import derived_preset

    monkeypatch.chdir(tmp_path)
    path = derived_preset("toy", ["seed=1"], "other")
    other = Preset.load(path)
    assert path == "runs/presets/other.yaml" and "toy" not in (tmp_path / path).read_text(encoding="utf-8")
    assert other.organism.model_path == "runs/other/00_model_organism/model" and other.data.data_root == "data/other"
    with pytest.raises(DataFormatError, match="lerning_rate"):
        derived_preset("toy", ["lerning_rate=1"], "bad")
    assert not (tmp_path / "runs/presets/bad.yaml").exists()  # an invalid --set leaves nothing behind
