"""Run folders: every run keeps its effective config in config.json, is finished when its marker file exists,
and is reused, resumed or replaced by one rule (`start_run`), the same for every stage.

- no folder, or no config.json: a new run;
- the same config, finished: reuse it (`is_finished`);
- the same config, unfinished: resume it (checkpoints, generations already written);
- another config, unfinished: a failed or interrupted run never blocks the corrected one; it is cleared;
- another config, finished: refused unless `overwrite` (CLI: `--overwrite`), so a finished run is never lost
  silently.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from .files import write_json

log = logging.getLogger(__name__)
DONE = "metrics.json"  # the last file every run writes


def as_config(cfg: Any) -> dict[str, Any]:
    """A config object or dict as the JSON-ready dict config.json holds."""
    if isinstance(cfg, dict):
        return json.loads(json.dumps(cfg, default=str))
    return cfg.to_dict()


def saved_config(run_dir: Path) -> dict[str, Any] | None:
    """The config.json of a run folder, or None when there is none (or it is unreadable)."""
    path = Path(run_dir) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_finished(run_dir: str | Path, cfg: Any, marker: str = DONE) -> bool:
    """True when run_dir holds a finished run (its marker file) made with this very config."""
    run_dir = Path(run_dir)
    return (run_dir / marker).is_file() and saved_config(run_dir) == as_config(cfg)


def start_run(run_dir: str | Path, cfg: Any, overwrite: bool = False, marker: str = DONE) -> Path:
    """Create (or keep, to resume) run_dir for a run of cfg and save config.json; see the module's rules."""
    run_dir, current = Path(run_dir), as_config(cfg)
    previous = saved_config(run_dir)
    if previous is not None and previous != current:
        changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        if (run_dir / marker).is_file() and not overwrite:
            raise FileExistsError(
                f"{run_dir} holds a finished run made with a different config (changed: {changed}). "
                "Fix: pass --overwrite (overwrite=True) to replace it, or use another preset name"
            )
        log.warning("%s: replacing a run made with a different config (changed: %s)", run_dir, changed)
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", current)
    return run_dir


# what stage 03 saves per fine-tuning kind: (folder inside the run, the file that marks it complete)
TRAINED = {"lora": ("adapter", "adapter_config.json"), "full": ("model", "config.json")}


def trained_weights(run_dir: str | Path) -> Path | None:
    """The weights a stage-03 run saved: its adapter/ (LoRA) or its whole model/ (full fine-tuning); None if none."""
    for folder, marker in TRAINED.values():
        if (Path(run_dir) / folder / marker).is_file():
            return Path(run_dir) / folder
    return None
