"""Set-up files: exact pins in pyproject.toml, environment.yml installing the same package, make targets, CI."""

from __future__ import annotations

import re
import tomllib

import yaml
from conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_dependency_is_pinned_exactly():
    project = PYPROJECT["project"]
    deps = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.+]*", d) for d in deps), deps
    assert "torch==2.13.0" in project["dependencies"]
    assert not any(d.startswith("flash-attn") for d in project["dependencies"])  # GPU extra only


def test_environment_yml_installs_the_package_not_its_own_list():
    env = yaml.safe_load((REPO / "environment.yml").read_text(encoding="utf-8"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    torch_pin = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch=="))
    assert pip == [torch_pin, "-e .[dev]"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert sorted(conda) == ["pip", "python=3.11"]


def test_make_targets_and_ci():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    for target in ("help", "setup", "test", "reproduce", "lab", "lint", "data"):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert re.search(r"^test: \$\(STAMP\)", makefile, re.M) and re.search(r"^reproduce: \$\(STAMP\)", makefile, re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_data_and_runs_are_ignored():
    ignored = (REPO / ".gitignore").read_text(encoding="utf-8").split()
    assert {"data/", "runs/", ".venv/"} <= set(ignored)
