"""The stage CLIs and the miniature data: exactly reproducible on the CPU (byte-identical outputs)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from mllm_safety import bias, mixtures
from mllm_safety.config import load_preset
from mllm_safety.sampledata import build


def tree_digest(root: Path, pattern: str = "**/*") -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.glob(pattern))
        if p.is_file()
    }


def test_sampledata_is_deterministic_and_seeded(tmp_path):
    a, b = build(tmp_path / "a", scale=0.1), build(tmp_path / "b", scale=0.1)
    assert tree_digest(a) == tree_digest(b)
    assert tree_digest(build(tmp_path / "c", seed=1, scale=0.1)) != tree_digest(a)


def test_stage_clis_reproduce_byte_identical_outputs(mini_data, tmp_path, capsys):
    digests = []
    for run in ("one", "two"):
        preset = dict(load_preset("smoke"), data_root=str(mini_data), runs_root=str(tmp_path / run))
        path = tmp_path / run / "smoke.yaml"
        path.parent.mkdir()
        path.write_text(yaml.safe_dump(preset), encoding="utf-8")
        assert bias.main(["--preset", str(path)]) == 0
        assert mixtures.main(["--preset", str(path)]) == 0
        digests.append(tree_digest(tmp_path / run / "smoke"))
    assert digests[0].keys() == digests[1].keys()
    assert {k: v for k, v in digests[0].items() if not k.endswith("config.json")} == {
        k: v for k, v in digests[1].items() if not k.endswith("config.json")
    }
    assert any(k.endswith("_sharegpt.json") for k in digests[0])


def test_stage_cli_bad_data_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mix.json").write_text('{"not": "a list"}', encoding="utf-8")
    preset = tmp_path / "bad.yaml"
    preset.write_text(
        yaml.safe_dump({"data_root": str(tmp_path / "d"), "runs_root": str(tmp_path / "r"),
                        "bias_datasets": {"mix": "mix.json"}}),
        encoding="utf-8",
    )  # fmt: skip
    assert bias.main(["--preset", str(preset)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "mix.json: top level is dict" in err and "Traceback" not in err
    assert mixtures.main(["--preset", str(tmp_path / "absent.yaml")]) == 2
