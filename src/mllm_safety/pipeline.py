"""Run the pipeline's notebooks headless with papermill, parameters injected from params/<preset>.yaml.

`python -m mllm_safety.pipeline run --preset toy --stages 01 02` executes each notebook into
runs/<preset>/notebooks/ and stops at the first failure, naming the notebook and the cell.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ablations import AblationConfig
from .bias import BiasConfig
from .config import field_names, load_preset, preset_name, repo_root, stage_config
from .evaluate import EvalConfig
from .files import USER_ERRORS
from .mixtures import MixConfig
from .organism import OrganismConfig
from .plots import FigureConfig
from .train import TrainConfig

log = logging.getLogger(__name__)
NOTEBOOKS = {
    "00": "00_model_organism.ipynb",
    "01": "01_data_bias.ipynb",
    "02": "02_mix_rejection_data.ipynb",
    "03": "03_qlora_finetune.ipynb",
    "04": "04_evaluate.ipynb",
    "05": "05_ablations.ipynb",
    "06": "06_figures.ipynb",
}


@dataclass(frozen=True)
class DataConfig:
    """Where a preset's data comes from: built here (the embedded default) or already on disk (real data)."""

    preset: str = "toy"
    data_root: str = "data/toy"
    world: bool = False  # build the organism's world (mllm_safety.toyworld) into data_root when it is missing
    sample_data: bool = False  # build the miniature sample datasets into data_root when it is missing
    sample_data_scale: float = 1.0  # record-count multiplier for the miniature datasets
    placeholder_model: bool = False  # build an untrained tiny LLaVA at model_path when it is missing
    model_path: str = "llava-hf/llava-1.5-7b-hf"
    seed: int = 0


STAGE_CONFIGS = (DataConfig, OrganismConfig, BiasConfig, MixConfig, TrainConfig, EvalConfig, AblationConfig,
                 FigureConfig)  # fmt: skip


def known_keys() -> set[str]:
    """Every key a preset may set: the union of the stage configs' fields (minus the injected preset name)."""
    return set().union(*(field_names(c) for c in STAGE_CONFIGS)) - {"preset"}


def ensure_data(preset: str) -> Path:
    """Build the miniature datasets for presets that ask for them; otherwise check data_root exists."""
    values = load_preset(preset, known_keys())
    cfg = DataConfig(**{k: v for k, v in values.items() if k in field_names(DataConfig)}, preset=preset_name(preset))
    root = Path(cfg.data_root)
    if not root.exists() and cfg.world:
        from .toyworld import build_world

        log.info("building the organism's world in %s", root)
        build_world(root, seed=cfg.seed)
    if not root.exists() and cfg.sample_data:
        from .sampledata import build

        log.info("building the miniature datasets in %s", root)
        build(root, seed=cfg.seed, scale=cfg.sample_data_scale)
    if not root.exists():
        raise FileNotFoundError(f"data_root {root} does not exist; see the README's 'Data' section for the layout")
    if cfg.placeholder_model and not Path(cfg.model_path).exists():
        build_placeholder_model(preset, Path(cfg.model_path))
    return root


def build_placeholder_model(preset: str, out: Path) -> Path:
    """An untrained tiny LLaVA whose tokenizer knows the preset's data (stands in until the organism exists)."""
    from .collate import LLAVA_SYSTEM, VICUNA_SYSTEM
    from .data import load_training_records
    from .tiny import build_tiny_llava, corpus

    mix = stage_config(MixConfig, preset)
    texts = [VICUNA_SYSTEM, LLAVA_SYSTEM, mix.reply, "USER: ASSISTANT: </s>"]
    for rel in (mix.instruct_json, mix.rejection_json, mix.vlguard_json):
        texts += corpus(load_training_records(Path(mix.data_root) / rel))
    log.info("building an untrained tiny LLaVA in %s", out)
    return build_tiny_llava(out, texts, seed=mix.seed)


def notebook_parameters(notebook: Path, values: dict[str, Any], preset: str) -> dict[str, Any]:
    """The preset values this notebook declares in its parameters cell, plus the preset name."""
    import papermill

    declared = set(papermill.inspect_notebook(str(notebook)))
    params = {k: v for k, v in values.items() if k in declared}
    return {**params, "preset": preset_name(preset)} if "preset" in declared else params


def run_notebook(stage: str, preset: str, out_dir: Path) -> Path:
    """Execute one notebook with papermill; a failure raises RuntimeError naming the notebook and cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    root = repo_root()
    src = root / "notebooks" / NOTEBOOKS[stage]
    values = load_preset(preset, known_keys())
    out = out_dir / NOTEBOOKS[stage]
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(
            str(src),
            str(out),
            parameters=notebook_parameters(src, values, preset),
            kernel_name="python3",
            cwd=str(root),
            progress_bar=True,
        )
    except PapermillExecutionError as e:
        raise RuntimeError(
            f"notebook {src.name} failed at cell {e.cell_index} ({e.ename}: {e.evalue}); the executed notebook is {out}"
        ) from None
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: `data` builds/checks a preset's data; `run` executes the notebooks of the given stages."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m mllm_safety.pipeline", description=__doc__)
    p.add_argument("command", choices=("data", "run"))
    p.add_argument("--preset", default="toy")
    p.add_argument("--stages", nargs="*", default=list(NOTEBOOKS), choices=list(NOTEBOOKS))
    args = p.parse_args(argv)
    try:
        ensure_data(args.preset)
        if args.command == "run":
            out_dir = Path("runs") / preset_name(args.preset) / "notebooks"
            for stage in args.stages:
                log.info("running notebook %s (preset %s)", NOTEBOOKS[stage], args.preset)
                print(run_notebook(stage, args.preset, out_dir))
    except (RuntimeError, *USER_ERRORS) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
