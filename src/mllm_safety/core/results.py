"""What every stage's `run()` returns: one base, `StageResult`, so that a notebook or a script treats the stages
alike. Each stage's result adds its own tables as fields and says what it saw in its numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(kw_only=True)
class StageResult:
    """The run folder a stage wrote and its flat metrics (the content of its metrics.json)."""

    folder: Path
    metrics: dict[str, Any] = field(default_factory=dict)

    def what_we_saw(self) -> str:
        """A few lines of markdown written from this run's numbers (each stage says its own)."""
        raise NotImplementedError(f"{type(self).__name__} does not say what it saw")
