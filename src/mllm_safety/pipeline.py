"""Run the pipeline's notebooks headless with papermill, parameters injected from params/<preset>.yaml.

`python -m mllm_safety.pipeline run --preset toy --stages 01 02` checks the whole preset, then executes each
notebook into runs/<preset>/notebooks/ and stops at the first failure, naming the notebook and the cell.
`python -m mllm_safety.pipeline data --preset toy` builds (or checks) the preset's data alone.
`--set key=value ...` overrides preset keys (values read as YAML) and `--as name` names the run folder
runs/<name>/; the preset with its overrides is saved as runs/presets/<name>.yaml (paths that follow from the
name are derived when it is read).
"""

from __future__ import annotations

import argparse
import difflib
import logging
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from .core.cli import run_cli
from .core.console import quiet_known_warnings
from .core.files import DataFormatError, write_text
from .core.layout import STAGES, repo_root, stage_folder
from .core.preset import Preset, load_preset, preset_name

log = logging.getLogger(__name__)
NOTEBOOKS = {f"{i:02d}": f"{stage_folder(stage)}.ipynb" for i, stage in enumerate(STAGES)}
KERNEL = "python3"
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # --as: a folder name, never a path ('..', '/')


def run_name(name: str) -> str:
    """A name given with --as: one folder under runs/ (and one file under runs/presets/), never a path."""
    if not RUN_NAME.fullmatch(name):
        raise DataFormatError(
            f"--as {name!r}: a run name is one folder name under runs/ (letters, digits, '.', '_', '-'; no path). "
            "Fix: e.g. --as my-run"
        )
    return name


def set_values(sets: list[str]) -> dict[str, Any]:
    """The `key=value` overrides of --set, each value read as YAML."""
    values = {}
    for pair in sets:
        key, sep, value = pair.partition("=")
        if not sep:
            raise DataFormatError(f"--set {pair!r}: expected KEY=VALUE")
        try:
            values[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise DataFormatError(f"--set {pair!r}: the value is not valid YAML ({getattr(e, 'problem', e)})") from None
    return values


def derived_preset(preset: str, sets: list[str], name: str | None) -> str:
    """The preset with `key=value` overrides (YAML values), saved as runs/presets/<name>.yaml; unchanged when
    there is nothing to override or rename. Nothing is written unless the result is a valid preset."""
    if not sets and not name:
        return preset
    name = run_name(name) if name is not None else preset_name(preset)
    values = {**load_preset(preset), **set_values(sets)}
    Preset.from_values(name, values, f"{preset} with --set")  # checked before anything is written
    path = Path("runs") / "presets" / f"{name}.yaml"
    write_text(path, yaml.safe_dump(values, sort_keys=False))
    return str(path)


def ensure_data(preset: str) -> Path:
    """Build the organism's world for presets that ask for it; otherwise check that data_root exists."""
    cfg = Preset.load(preset).data
    root = Path(cfg.data_root)
    if cfg.world:
        from .core.world import ensure_world

        ensure_world(root, seed=cfg.seed)
    if not root.exists():
        raise FileNotFoundError(f"data_root {root} does not exist. Fix: see docs/data.md for the layout")
    return root


def notebook_parameters(notebook: Path, preset: Preset) -> dict[str, Any]:
    """The preset's effective value of every name this notebook declares in its parameters cell (derived paths
    included), and as `preset` the file it was read from, which the notebook's set-up cell reads again: so the
    notebook runs what the CLI runs, whatever the file is called and wherever it lies."""
    import papermill

    declared = set(papermill.inspect_notebook(str(notebook)))
    source = Path(preset.source).resolve()
    root = repo_root()
    where = source.relative_to(root) if source.is_relative_to(root) else source
    return {**{k: v for k, v in preset.effective().items() if k in declared}, "preset": str(where)}


def checked_edits(notebook: Path, preset: Preset, edits: dict[str, Any]) -> dict[str, Any]:
    """Edits to a notebook's parameters, refused unless each names a parameter of the notebook and holds a value its
    preset key accepts (papermill itself only warns, then runs the notebook without them)."""
    if not edits:
        return {}
    import papermill

    declared = sorted(papermill.inspect_notebook(str(notebook)))
    unknown = sorted(set(edits) - set(declared))
    if unknown:
        near = {k: difflib.get_close_matches(k, declared, n=1) for k in unknown}
        hints = ", ".join(f"{k!r}" + (f" (did you mean {near[k][0]!r}?)" if near[k] else "") for k in unknown)
        raise DataFormatError(f"{notebook.name}: unknown parameter(s) {hints}. Fix: use one of {declared}")
    values = {**preset.values, **{k: v for k, v in edits.items() if k != "preset"}}
    Preset.from_values(preset.name, values, f"{notebook.name}'s parameters")  # types and ranges, as in a preset
    return edits


def run_notebook(stage: str, preset: str, out_dir: Path, edits: dict[str, Any] | None = None) -> Path:
    """Execute one notebook with papermill (`edits`: parameters changed as a user would in the notebook, checked
    first); a failure raises RuntimeError naming the notebook and cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    root = repo_root()
    src = root / "notebooks" / NOTEBOOKS[stage]
    values = Preset.load(preset)
    parameters = {**notebook_parameters(src, values), **checked_edits(src, values, edits or {})}
    out = out_dir / NOTEBOOKS[stage]
    out.parent.mkdir(parents=True, exist_ok=True)
    running = out.with_name(out.stem + RUNNING)  # its name says so until it finishes (a killed run keeps it)
    out.unlink(missing_ok=True)
    try:
        papermill.execute_notebook(
            str(src), str(running), parameters=parameters, kernel_name=KERNEL, cwd=str(root), progress_bar=True
        )
    except PapermillExecutionError as e:
        mark_unfinished(running, out, f"cell {e.cell_index} raised {e.ename}: {e.evalue}")
        raise RuntimeError(
            f"notebook {src.name} failed at cell {e.cell_index} ({e.ename}: {e.evalue}); the executed notebook is {out}"
        ) from None
    except BaseException as e:  # interrupted (Ctrl-C) or any other stop: the copy says it is unfinished
        mark_unfinished(running, out, f"interrupted ({type(e).__name__})")
        raise
    running.replace(out)
    return out


RUNNING = ".running.ipynb"  # the executed copy's suffix while papermill writes it
UNFINISHED = (
    "**Unfinished run.** This executed copy stopped before its end ({why}); the outputs below end there. "
    "Run it again (`make reproduce`, or `python -m mllm_safety.pipeline run --stages ...`)."
)


def mark_unfinished(running: Path, out: Path, why: str) -> None:
    """Put a banner cell first in a half-run copy and give it the notebook's name (nothing when none was written)."""
    import nbformat

    if not running.is_file():
        return
    nb = nbformat.read(running, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(UNFINISHED.format(why=why)))
    nbformat.write(nb, out)
    running.unlink()


def main(argv: list[str] | None = None) -> int:
    """CLI: `data` builds/checks a preset's data; `run` executes the notebooks of the given stages."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m mllm_safety.pipeline", description=__doc__)
    p.add_argument("command", choices=("data", "run"))
    p.add_argument("--preset", default="toy")
    p.add_argument("--stages", nargs="*", default=list(NOTEBOOKS), choices=list(NOTEBOOKS))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override preset keys (YAML values)")
    p.add_argument("--as", dest="name", help="the run folder's name runs/<name>/ (default: the preset's)")
    args = p.parse_args(argv)
    quiet_known_warnings()

    def work() -> None:
        preset = derived_preset(args.preset, args.set, args.name)
        ensure_data(preset)
        if args.command == "run":
            out_dir = Path("runs") / preset_name(preset) / "notebooks"
            for stage in args.stages:
                log.info("running notebook %s (preset %s)", NOTEBOOKS[stage], preset)
                print(run_notebook(stage, preset, out_dir))

    try:
        return run_cli(work)
    except RuntimeError as e:  # a notebook failed: its message names the notebook, the cell and the error
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
