"""The stage CLIs: exactly reproducible on the CPU (byte-identical outputs), one-line errors on bad data."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from mllm_safety import data_bias as bias
from mllm_safety import mix_rejection_data as mixtures
from mllm_safety.core.preset import load_preset


def tree_digest(root: Path, pattern: str = "**/*") -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.glob(pattern))
        if p.is_file()
    }


def test_stage_clis_reproduce_byte_identical_outputs(world_data, tmp_path, capsys):
    digests = []
    for run in ("one", "two"):
        preset = dict(load_preset("smoke"), data_root=str(world_data), runs_root=str(tmp_path / run))
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
        yaml.safe_dump(
            {"data_root": str(tmp_path / "d"), "runs_root": str(tmp_path / "r"), "bias_datasets": {"mix": "mix.json"}}
        ),
        encoding="utf-8",
    )
    assert bias.main(["--preset", str(preset)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "mix.json: top level is dict" in err and "Traceback" not in err
    assert mixtures.main(["--preset", str(tmp_path / "absent.yaml")]) == 2
