"""Notebook contracts (one parameters cell, names = config fields, stripped outputs) and headless execution."""

from __future__ import annotations

import ast
import dataclasses
import json
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
import yaml
from conftest import REPO

from mllm_safety.core.config import CONFIGS as BY_NAME
from mllm_safety.core.config import ExecutorConfig, known_keys
from mllm_safety.core.layout import STAGES
from mllm_safety.core.preset import Preset, load_preset, shipped_presets
from mllm_safety.pipeline import NOTEBOOKS, ensure_data, run_notebook

CONFIGS = {f"{i:02d}": BY_NAME[stage] for i, stage in enumerate(STAGES)}
PATHS = {stage: REPO / "notebooks" / name for stage, name in NOTEBOOKS.items()}


def test_every_stage_notebook_exists_and_has_a_config():
    assert set(CONFIGS) == set(NOTEBOOKS) and all(p.is_file() for p in PATHS.values())


@pytest.mark.parametrize("stage", sorted(NOTEBOOKS))
def test_one_parameters_cell_second_with_the_config_fields(stage):
    nb = nbformat.read(PATHS[stage], as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [1] and nb.cells[0].cell_type == "markdown"
    names = set(papermill.inspect_notebook(str(PATHS[stage])))
    assert names == {f.name for f in dataclasses.fields(CONFIGS[stage])}


@pytest.mark.parametrize("stage", sorted(NOTEBOOKS))
def test_notebook_defaults_equal_the_embedded_preset(stage):
    toy = load_preset("toy")
    for name, param in papermill.inspect_notebook(str(PATHS[stage])).items():
        if name in toy:
            assert ast.literal_eval(param["default"]) == toy[name], name


@pytest.mark.parametrize("stage", sorted(NOTEBOOKS))
def test_committed_stripped_valid_and_thin(stage):
    nbformat.validate(nbformat.read(PATHS[stage], as_version=4))  # a schema-invalid notebook logs errors everywhere
    nb = json.loads(PATHS[stage].read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "mllm-safety" and "language_info" not in nb["metadata"]
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None
            source = "".join(cell["source"])
            assert "def " not in source and "class " not in source


def test_every_preset_key_is_a_notebook_parameter_or_data_setting():
    declared = set().union(*(papermill.inspect_notebook(str(p)) for p in PATHS.values()))
    data_keys = {"world"} | {f.name for f in dataclasses.fields(ExecutorConfig)}  # not parameters: where cells run
    for preset in shipped_presets():
        assert set(load_preset(preset)) <= declared | data_keys
    assert declared | data_keys == known_keys() | {"preset"}


EDITED_MIS = "mis_train/mis_train_copy.json"  # notebook 05's edited parameter: the same MIS file, another name
_SMOKE: dict[str, Path] = {}  # the smoke run of this test session (tests/test_notebook_html.py reads it too)


def smoke_notebooks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Notebooks 00-06 executed headless in the smoke preset, once per test session: the folder holding data/,
    runs/, base/, figures/ and executed/ (the executed notebooks)."""
    if "root" in _SMOKE:
        return _SMOKE["root"]
    root = tmp_path_factory.mktemp("smoke")
    preset = dict(
        load_preset("smoke"),
        data_root=str(root / "data"),
        runs_root=str(root / "runs"),
        model_path=str(root / "base"),
        figures_root=str(root / "figures"),
    )
    path = root / "smoke.yaml"
    path.write_text(yaml.safe_dump(preset), encoding="utf-8")
    ensure_data(str(path))
    # a value edited in notebook 05's parameters reaches its cells: the same MIS file under another name
    shutil.copy(root / "data/mis_train/mis_train.json", root / "data" / EDITED_MIS)
    for stage in sorted(NOTEBOOKS):
        edits = {"mis_train_json": EDITED_MIS} if stage == "05" else {}
        run_notebook(stage, str(path), root / "executed", edits)
    _SMOKE["root"] = root
    return root


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The session's smoke run of notebooks 00-06 (see smoke_notebooks)."""
    return smoke_notebooks(tmp_path_factory)


@pytest.mark.notebook
def test_notebooks_00_to_06_execute_headless_in_the_smoke_preset(smoke_run):
    tmp_path, edited = smoke_run, EDITED_MIS
    for stage in sorted(NOTEBOOKS):
        out = tmp_path / "executed" / NOTEBOOKS[stage]
        assert nbformat.read(out, as_version=4).cells[-1].outputs  # the last cell printed something
    runs = tmp_path / "runs/smoke"
    organism = json.loads((runs / "00_model_organism/metrics.json").read_text())
    assert {"step1/text_harmful/refusal", "step4/image_harmful/asr", "step4/image_benign/help"} <= set(organism)
    assert (tmp_path / "base/config.json").is_file()
    bias = json.loads((runs / "01_data_bias/metrics.json").read_text())
    assert bias["vlguard_train/refusal_share/paper_strmatch"] > bias["llava_mix665k/refusal_share/paper_strmatch"]
    official = "8_llava_med_instruct_60k_inline_mention_20_llava_v1_5_mix665k"
    mix = json.loads((runs / "02_mix_rejection_data/metrics.json").read_text())
    assert mix[f"{official}/rejection_share"] == pytest.approx(8 / 28)
    assert mix["frac_10pct/rejection_share"] == pytest.approx(0.1)
    assert (runs / "01_data_bias/refusal_share.pdf").is_file()
    trained = json.loads((runs / "03_qlora_finetune/metrics.json").read_text())
    assert trained[f"{official}/samples"] == 28 and trained[f"{official}/steps"] == 2  # 28 records / batch 16
    assert (runs / "03_qlora_finetune" / official / "adapter/adapter_config.json").is_file()
    results = pd.read_csv(runs / "04_evaluate/results.csv")
    assert set(results["model"]) == {"base", official}
    assert {"asr", "refusal_rate", "accuracy", "asr_sum_over_scenarios"} <= set(results["metric"])
    studies = pd.read_csv(runs / "05_ablations/studies.csv")
    assert set(studies["study"]) == {"fraction", "eos", "images", "curated", "format", "controls"}
    summary = pd.read_csv(runs / "05_ablations/summary.csv")
    assert len(summary) == len(studies.drop_duplicates(["study", "row"]))
    assert (runs / "05_ablations/organisms/decoy/model/config.json").is_file()
    figures = tmp_path / "figures/smoke"
    assert {p.stem for p in figures.glob("*.png")} == {p.stem for p in figures.glob("*.pdf")} and len(
        list(figures.glob("*.png"))
    ) == 8
    assert (figures / "results.md").read_text().count("###") == 6
    assert "MIS reasoning" in set(studies["row"])  # the curated study's MIS row, on the world's MIS-format data
    cell = runs / "05_ablations/runs/mis_reasoning-s0/02_mix_rejection_data/config.json"
    assert json.loads(cell.read_text())["mis_train_json"] == edited
    assert {"mis_easy", "mis_hard", "mis_benign_hard"} <= set(results["benchmark"])


@pytest.mark.notebook
def test_a_failing_notebook_names_itself_and_the_cell(tmp_path):
    preset = dict(load_preset("smoke"), data_root=str(tmp_path / "absent"), runs_root=str(tmp_path / "runs"))
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(preset), encoding="utf-8")
    with pytest.raises(RuntimeError, match=r"01_data_bias.ipynb failed at cell \d+ .*DataFormatError"):
        run_notebook("01", str(path), tmp_path / "executed")
    executed = nbformat.read(tmp_path / "executed" / "01_data_bias.ipynb", as_version=4)  # a reader sees it stopped
    assert executed.cells[0].source.startswith("**Unfinished run.**") and "DataFormatError" in executed.cells[0].source
    assert not list((tmp_path / "executed").glob("*.running.ipynb"))


@pytest.mark.parametrize("preset", shipped_presets())
def test_a_notebook_run_has_the_config_of_the_cli_run(preset):
    """papermill injects the preset's effective value of every parameter (derived paths included) and the
    notebook's set-up cell builds the whole preset from them: each section equals the CLI's, so no toy default
    leaks into another preset's run."""
    from mllm_safety.pipeline import notebook_parameters

    cli = Preset.load(preset)
    for stage, path in PATHS.items():
        defaults = {k: ast.literal_eval(p["default"]) for k, p in papermill.inspect_notebook(str(path)).items()}
        notebook = Preset.from_params({**defaults, **notebook_parameters(path, cli)})
        assert notebook.effective() == cli.effective(), (stage, preset)


@pytest.mark.parametrize("stage", sorted(NOTEBOOKS))
def test_a_notebook_imports_its_own_stage_and_the_library_only(stage):
    """The layering rule for notebooks: NN_<name>.ipynb imports mllm_safety.<name> and the library (core/ and its
    public loaders in mllm_safety.data), nothing else of the package (no other stage, no tool)."""
    own = STAGES[int(stage)]
    nb = nbformat.read(PATHS[stage], as_version=4)
    found = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mllm_safety"):
                names = [node.module] if node.module != "mllm_safety" else [f"mllm_safety.{a.name}" for a in node.names]
                found |= set(names)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("mllm_safety")}
    allowed = (f"mllm_safety.{own}", "mllm_safety.core", "mllm_safety.data")  # data: the library's public loaders
    outside = sorted(m for m in found if not any(m == a or m.startswith(f"{a}.") for a in allowed))
    assert found and not outside, (stage, outside)


def test_a_notebook_reads_the_very_preset_file_it_was_run_with(tmp_path):
    """A preset given as a file (any name, anywhere) reaches every section of a notebook's Preset, including keys
    the notebook does not declare (notebook 05 declares no training key)."""
    from mllm_safety.pipeline import notebook_parameters

    path = tmp_path / "mine.yaml"
    path.write_text("base: smoke\nlearning_rate: 0.05\nmax_items: 2\n", encoding="utf-8")
    cli = Preset.load(str(path))
    defaults = {k: ast.literal_eval(p["default"]) for k, p in papermill.inspect_notebook(str(PATHS["05"])).items()}
    notebook = Preset.from_params({**defaults, **notebook_parameters(PATHS["05"], cli)})
    assert notebook.name == "mine" and notebook.effective() == cli.effective()
    assert (notebook.train.learning_rate, notebook.eval.max_items) == (0.05, 2)
