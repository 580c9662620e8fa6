"""Stage 05: the study grid, the arms' mixtures, and the mechanism controls' stage-1 data."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pydantic
import pytest
from conftest import SMOKE_ORGANISM, rec

from mllm_safety import ablations as ab
from mllm_safety.core import world as tw
from mllm_safety.core.config import AblationConfig, MixConfig
from mllm_safety.core.files import DataFormatError
from mllm_safety.core.judges import FULL_REFUSAL, paper_strmatch
from mllm_safety.core.mixing import restyle_replies, to_rejection
from mllm_safety.core.preset import Preset
from mllm_safety.core.vlguard import VLGUARD_VARIANTS
from mllm_safety.core.vocabulary import DEFAULT_REPLY, IMAGE_TAG, REASONS, VARIED_REPLIES, record_images


def test_grid_expands_to_the_stated_rows():
    cfg = AblationConfig()
    g = ab.grid(cfg)
    rows = g.drop_duplicates(["study", "row"]).groupby("study", sort=False).size().to_dict()
    assert rows == {
        "fraction": 7,
        "eos": 2,
        "reply": 3,
        "images": 4,
        "source": 2,
        "curated": 1 + len(VLGUARD_VARIANTS),
        "format": 3,
        "controls": 6,
    }
    seeds = g.groupby("study")["seed"].nunique()
    assert seeds["fraction"] == 3 and (seeds.drop("fraction") == 2).all()  # format_seeds 0: study_seeds
    five = ab.grid(AblationConfig(format_seeds=5)).groupby("study")["seed"].nunique()
    assert five["format"] == 5 and five["eos"] == 2
    fractions = g[g["study"] == "fraction"].drop_duplicates("row")["fraction"].tolist()
    assert fractions == [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3]
    # every study but the fraction sweep starts from the reference arm, and shares its runs
    ref = ab.Arm(cfg.reference_fraction).key
    for study, part in g[g["study"] != "fraction"].groupby("study"):
        first = part[part["order"] == 0]
        assert set(first["arm"]) == ({ab.Arm(0.0).key} if study == "controls" else {ref}), study
    assert g["run"].nunique() < len(g)  # the reference runs are shared, each run once


def test_each_row_changes_one_factor():
    cfg = AblationConfig()
    defaults = dataclasses.asdict(ab.Arm(cfg.reference_fraction))
    for study, rows in ab.study_rows(cfg).items():
        if study in ("fraction", "controls"):
            continue
        for _, arm in rows:
            changed = {k for k, v in dataclasses.asdict(arm).items() if v != defaults[k]}
            assert len(changed) <= 1, (study, changed)


def test_arm_keys_are_unique_and_readable():
    arms = {arm for rows in ab.study_rows(AblationConfig()).values() for _, arm in rows}
    keys = {a.key for a in arms}
    assert len(keys) == len(arms)
    assert ab.Arm(0.1).key == "frac10"
    assert ab.Arm(0.1, eos_mask=False).key == "frac10_eos_mask-off"
    assert ab.Arm(0.1, curated="single_turn").key == "vlguard_single_turn"


def test_controls_need_an_organism_and_unknown_studies_fail():
    cfg = AblationConfig(studies=["eos", "controls"])
    assert set(ab.grid(cfg, organism=False)["study"]) == {"eos"}
    with pytest.raises(pydantic.ValidationError, match="studies"):
        AblationConfig(studies=["nope"])


@pytest.fixture(scope="module")
def mix_cfg(world_data, tmp_path_factory) -> MixConfig:
    return Preset.load("smoke", data_root=str(world_data), fraction_total=40, seed=0).mix


def rejections(records):
    return [r for r in records if r.get("rejection")]


def test_fraction_arm_has_the_share_and_the_sources(mix_cfg, tmp_path):
    recs = ab.build_mix(ab.Arm(0.25), mix_cfg, 0, tmp_path)
    assert len(recs) == 40 and len(rejections(recs)) == 10
    assert {r["source"] for r in rejections(recs)} == {Path(mix_cfg.rejection_json).stem}


def test_in_distribution_rejections_come_from_the_instruction_data(mix_cfg, tmp_path):
    recs = ab.build_mix(ab.Arm(0.25, source="in_distribution"), mix_cfg, 0, tmp_path)
    rej = rejections(recs)
    assert len(rej) == 10 and all(r["image"].startswith(mix_cfg.instruct_image_dir) for r in rej)
    assert len({r["id"] for r in recs}) == len(recs)  # drawn once: never both a rejection and a normal record


@pytest.mark.parametrize("kind", ["blank", "noise", "none"])
def test_stand_in_images(mix_cfg, tmp_path, kind):
    recs = ab.build_mix(ab.Arm(0.25, images=kind), mix_cfg, 0, tmp_path)
    rej, normal = rejections(recs), [r for r in recs if not r.get("rejection")]
    if kind == "none":
        assert all(not record_images(r) and IMAGE_TAG not in r["conversations"][0]["value"] for r in rej)
    else:
        paths = {r["image"] for r in rej}
        assert len(paths) == (1 if kind == "blank" else min(8, len(rej)))
        assert all((Path(mix_cfg.data_root) / p).is_file() for p in paths)  # resolvable from data_root
    assert any(path.startswith(mix_cfg.instruct_image_dir) for r in normal for path in record_images(r))


def test_curated_arm_matches_the_size(mix_cfg, tmp_path):
    recs = ab.build_mix(ab.Arm(0.1, curated="multi_turn"), mix_cfg, 0, tmp_path)
    assert len(recs) == 40 and any(r["source"] == "vlguard" for r in recs)


def test_reply_styles_change_only_rejection_turns():
    records = [to_rejection(rec("a"), DEFAULT_REPLY), rec("b")]
    assert restyle_replies(records, "plain") == records
    detailed = restyle_replies(records, "detailed", seed=1)
    first = detailed[0]["conversations"][1]["value"]
    assert first.startswith(DEFAULT_REPLY) and first.endswith(REASONS) and detailed[1] == records[1]
    varied = {restyle_replies(records, "varied", seed=s)[0]["conversations"][1]["value"] for s in range(20)}
    assert varied <= set(VARIED_REPLIES) and len(varied) > 1
    with pytest.raises(ValueError, match="reply style"):
        restyle_replies(records, "long")


@pytest.mark.parametrize("reply", [*VARIED_REPLIES, *(f"{DEFAULT_REPLY}. {r}" for r in REASONS)])
def test_every_reply_is_a_refusal_even_split_word_by_word(reply):
    spaced = " ".join(reply.replace("'", " ' ").replace(",", " ,").replace(".", " .").split())
    assert paper_strmatch(reply) == FULL_REFUSAL and paper_strmatch(spaced) == FULL_REFUSAL


def test_control_alignments_wire_refusal_to_other_words():
    world = tw.make_world(0)
    refused = {
        mode: {r["topic"] for r in tw.text_alignment(world, mode) if "sorry" in r["conversations"][1]["value"]}
        for mode in tw.ALIGNMENTS
    }
    assert refused["harmful"] == set(tw.HARMFUL)
    assert refused["decoy"] == set(tw.DECOYS) and not refused["decoy"] & set(tw.HARMFUL)
    assert refused["none"] == set()
    mix = [rec(f"inst_{k}") for k in range(6)] + tw.text_alignment(world)[:3]
    swapped = tw.with_replay(mix, world, "decoy")
    assert len(swapped) == len(mix) and sum(map(tw.is_replay, swapped)) == 3
    with pytest.raises(ValueError, match="alignment"):
        tw.text_alignment(world, "other")


@pytest.fixture(scope="module")
def smoke_organism(tmp_path_factory):
    """A barely trained smoke-size organism in its world (seconds)."""
    from mllm_safety.model_organism import run as build

    root = tmp_path_factory.mktemp("abl")
    where = {"runs_root": str(root / "org"), "data_root": str(root / "data"), "model_path": str(root / "base")}
    organism = Preset.from_values("smoke", {**where, **SMOKE_ORGANISM})
    build(organism)
    return root, organism.organism


def test_a_second_run_reuses_every_finished_run(smoke_organism, monkeypatch):
    root, org = smoke_organism
    where = {"runs_root": str(root / "runs"), "data_root": org.data_root, "model_path": org.model_path}
    preset = Preset.load("smoke", **where, studies=["eos"], study_seeds=1, max_new_tokens=6)
    cfg = preset.studies
    first = ab.run(preset)
    assert set(first.grid["run"]) == {"frac10-s0", "frac10_eos_mask-off-s0"}
    assert set(first.results["run"]) == {"base_harmful", "frac10-s0", "frac10_eos_mask-off-s0"}
    adapter = cfg.stage_dir / "runs/frac10-s0/03_qlora_finetune/mix/adapter/adapter_model.safetensors"
    stamp = adapter.stat().st_mtime_ns
    # a value given to the stage (here max_new_tokens; smoke.yaml says 8) is what its cells ran with
    cell = json.loads((cfg.stage_dir / "runs/frac10-s0/04_evaluate/config.json").read_text())
    assert cell["max_new_tokens"] == 6 and cell["model_path"] == org.model_path

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished run was built again")

    monkeypatch.setattr(ab.cells, "build_mix", forbidden)
    monkeypatch.setattr("mllm_safety.evaluate.run", forbidden)
    monkeypatch.setattr("mllm_safety.qlora_finetune.load_model", forbidden)
    second = ab.run(preset)
    assert adapter.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(first.summary, second.summary)
    assert (cfg.stage_dir / "summary.md").read_text().startswith("### eos")


def test_the_curated_study_gains_an_mis_row_at_vlguards_size(tmp_path):
    from test_mix_rejection_data import mis_train_file

    from mllm_safety.core.world import build_world

    assert "MIS reasoning" not in dict(ab.study_rows(AblationConfig(studies=["curated"]))["curated"])
    rows = dict(
        ab.study_rows(AblationConfig(studies=["curated"], mis_train_json="mis_train/mis_train.json"))["curated"]
    )
    assert rows["MIS reasoning"].key == "mis_reasoning"
    root = build_world(tmp_path / "world", seed=0)
    mis_train_file(root / "mis_train", 60)
    mix = Preset.load("smoke", data_root=str(root), fraction_total=40, mis_train_json="mis_train/mis_train.json").mix
    vlguard = ab.build_mix(ab.Arm(0.1, curated="multi_turn"), mix, 0, tmp_path)
    recs = ab.build_mix(rows["MIS reasoning"], mix, 0, tmp_path)
    reasoning = [r for r in recs if r["source"] == "mis_train"]
    assert len(recs) == 40 and len(reasoning) == sum(r["source"] == "vlguard" for r in vlguard) > 0
    assert all(len(r["image"]) == 2 for r in reasoning)
    with pytest.raises(DataFormatError, match="the MIS row needs 61 records, the file has 60"):
        ab.build_mix(rows["MIS reasoning"], dataclasses.replace(mix, mis_size=61), 0, tmp_path)


def test_a_control_organisms_cells_mix_from_its_own_stage4_data(tmp_path, monkeypatch):
    """The grid reads stage 02's sources once, but a control cell's instruction data is its organism's stage-4 mix
    (its own replay): the shared sources must not reach it."""
    seen = {}

    class Stop(Exception):
        pass

    def capture(arm, mix, seed, run_dir, sources=None):
        seen[arm.alignment] = (sources, mix.instruct_json)
        return []

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(ab.cells, "build_mix", capture)
    monkeypatch.setattr(ab.cells, "train_mixture", stop)
    preset = Preset.load("smoke", runs_root=str(tmp_path / "runs"), data_root=str(tmp_path / "data"))
    stage4 = tmp_path / "data/organisms/decoy/stage4_mix.json"
    for alignment, base in (("harmful", ("model", None)), ("decoy", ("model", str(stage4)))):
        with pytest.raises(Stop):
            ab.cells.run_cell(preset, base, ab.Arm(0.1, alignment=alignment), 0, alignment, sources=("shared",))
    assert seen["harmful"] == (("shared",), preset.mix.instruct_json)
    assert seen["decoy"] == (None, "organisms/decoy/stage4_mix.json")


def test_study_readouts_pool_seeds_and_items_and_give_the_probes_range(tmp_path):
    """Two seeds of one row: the margin's mean is the mean of the seeds' means, its interval lies within the
    items' span, and the probe's 'interval' is the lowest and highest seed."""
    from mllm_safety.ablations.tables import readout_table, study_readouts
    from mllm_safety.core.layout import stage_dir

    cfg = AblationConfig(runs_root=str(tmp_path), preset="t")
    table = pd.DataFrame(
        [{"study": "format", "order": 0, "row": "medical-style questions", "run": f"r-s{s}"} for s in (0, 1)]
    )
    for run, margins, auroc in (("r-s0", [1.0, 3.0], 0.6), ("r-s1", [-1.0, 1.0], 0.8)):
        folder = stage_dir(cfg.stage_dir / "runs", run, "evaluate") / "mix"
        folder.mkdir(parents=True)
        items = pd.DataFrame({"benchmark": "typo", "id": ["a", "b"], "harmful": True, "group": "x", "margin": margins})
        items.to_csv(folder / "readouts_items.csv", index=False)
        summary = pd.DataFrame([{"benchmark": "all", "readout": "harm_probe_auroc", "value": auroc}])
        summary.to_csv(folder / "readouts.csv", index=False)
    out = study_readouts(cfg, table, samples=200).set_index("readout")
    assert out.loc["margin typo", "mean"] == pytest.approx(1.0)  # (2 + 0) / 2
    assert -1.0 <= out.loc["margin typo", "ci_low"] <= 1.0 <= out.loc["margin typo", "ci_high"] <= 3.0
    assert out.loc["harm probe AUROC", ["mean", "ci_low", "ci_high"]].tolist() == pytest.approx([0.7, 0.6, 0.8])
    shown = readout_table(out.reset_index())
    assert shown.loc["medical-style questions", "harm probe AUROC"] == "0.70 [0.60, 0.80]"
    assert list(shown.columns) == ["margin: typo", "harm probe AUROC"]  # an uncatalogued key keeps its name


def test_the_format_line_reads_each_question_form_in_each_evaluation_form():
    from mllm_safety.ablations.tables import format_line

    rows = [
        ("attack-style questions", "ASR typo", 0.0),
        ("attack-style questions", "over-refusal benign typo", 1.0),
        ("attack-style questions", "ASR medical", 0.18),
        ("attack-style questions", "over-refusal benign medical", 0.02),
    ]
    intervals = pd.DataFrame([{"study": "format", "row": r, "metric": m, "mean": v} for r, m, v in rows])
    line = format_line(intervals)
    assert "attack-style questions: attack layout 0.00 / 1.00, medical-style question 0.18 / 0.02" in line
    assert "training template" not in line  # a form the study did not evaluate is left out
    assert format_line(intervals.assign(study="fraction")) == ""
