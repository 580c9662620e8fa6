"""The house rules, read from the import statements: the library (core/) imports only core/ (never a stage, an
entry point or a command-line tool of tools/), no stage imports a tool, a stage never imports a later stage, the
figures stage never imports torch, and the package has no import cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from mllm_safety.core.layout import STAGES

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mllm_safety"


def imports(path: Path) -> set[str]:
    """The mllm_safety modules a file imports (absolute names), at any depth of the file."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    base = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            parent = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
            target = f"{parent}.{node.module}" if node.module else parent
            found |= {target} if node.module else {f"{target}.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mllm_safety"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mllm_safety")}
    return found


GRAPH = {p: imports(p) for p in PACKAGE.rglob("*.py")}


def stage_of(module: str) -> int | None:
    name = module.removeprefix("mllm_safety.").split(".")[0]
    return STAGES.index(name) if name in STAGES else None


def in_core(path: Path) -> bool:
    return path.relative_to(PACKAGE).parts[0] == "core"


def test_the_library_never_imports_a_stage_or_an_entry_point():
    for path, deps in GRAPH.items():
        if in_core(path):
            outside = sorted(d for d in deps if d != "mllm_safety.core" and not d.startswith("mllm_safety.core."))
            assert not outside, f"{path.relative_to(PACKAGE)}: core/ imports only core/, not {outside}"


def test_the_library_never_imports_a_tool():
    """tools/ (fixtures, replicas, reports) builds on core/; core/ never reaches back into it."""
    for path, deps in GRAPH.items():
        if in_core(path):
            tools = sorted(d for d in deps if d == "mllm_safety.tools" or d.startswith("mllm_safety.tools."))
            assert not tools, f"{path.relative_to(PACKAGE)}: the library imports the command-line tools {tools}"


def test_no_stage_imports_a_tool():
    for stage in STAGES:  # a stage is a module, src/mllm_safety/<stage>.py, or a package, src/mllm_safety/<stage>/
        paths = [p for p in GRAPH if p.relative_to(PACKAGE).parts[0] in (f"{stage}.py", stage)]
        assert paths, f"stage {stage!r} has no module under {PACKAGE}"
        for path in paths:
            tools = sorted(d for d in GRAPH[path] if d == "mllm_safety.tools" or d.startswith("mllm_safety.tools."))
            assert not tools, f"{path.relative_to(PACKAGE)}: a stage imports the command-line tools {tools}"


def test_a_stage_never_imports_a_later_stage():
    """Stage modules and every file of a stage package (ablations/, qlora_finetune/, figures/)."""
    for path, deps in GRAPH.items():
        own = stage_of(f"mllm_safety.{path.relative_to(PACKAGE).parts[0].removesuffix('.py')}")
        if own is not None:
            later = [d for d in deps if (stage_of(d) or -1) > own]
            assert not later, (str(path.relative_to(PACKAGE)), later)


def test_no_import_cycle():
    modules = {
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): d
        for p, d in GRAPH.items()
    }
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for d in modules.get(m, ()):
            if d in modules:
                assert state.get(d) != 1, f"import cycle: {' -> '.join([*trail, m, d])}"
                if d not in state:
                    visit(d, [*trail, m])
        state[m] = 2

    for m in modules:
        if m not in state:
            visit(m, [])


def test_the_figures_stage_never_imports_torch():
    code = "import sys, mllm_safety.figures; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_stage_has_one_name_for_its_notebook_module_cli_config_and_folder():
    import importlib

    from mllm_safety.core.config import CONFIGS
    from mllm_safety.core.layout import stage_folder

    for i, stage in enumerate(STAGES):
        assert stage_folder(stage) == f"{i:02d}_{stage}"
        assert (PACKAGE.parents[1] / "notebooks" / f"{stage_folder(stage)}.ipynb").is_file(), stage
        assert callable(importlib.import_module(f"mllm_safety.{stage}").main), stage
        assert CONFIGS[stage].stage == stage


def test_a_stage_reads_other_stages_files_through_upstream_only():
    """The data flow: a stage finds an earlier stage's files with `upstream` (core.config), which refuses a later
    stage; no stage module builds another stage's folder from its name itself. Stage 05 is the exception that
    proves the rule: its cells run stages 02-04 inside its own folder."""
    for path in PACKAGE.rglob("*.py"):
        part = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if part not in STAGES or part == "ablations":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("stage_dir", "stage_folder"):
                named = [a.value for a in node.args if isinstance(a, ast.Constant) and a.value in STAGES]
                assert not named, (
                    f"{path.relative_to(PACKAGE)}:{node.lineno} builds the folder of {named}: use upstream"
                )


def test_upstream_refuses_a_later_stage():
    from mllm_safety.core.layout import upstream

    assert upstream("runs/toy", "evaluate", "qlora_finetune").as_posix() == "runs/toy/03_qlora_finetune"
    with pytest.raises(ValueError, match="cannot read the files of figures"):
        upstream("runs/toy", "evaluate", "figures")
