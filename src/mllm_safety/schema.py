"""The one in-memory schema for evaluation items, shared by every benchmark loader."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class EvalItem:
    """One benchmark question: image is a path, a list of paths (multi-image) or None."""

    id: str
    benchmark: str
    category: str
    prompt: str
    image: str | list[str] | None
    harmful: bool
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSONL generations (DESIGN.md contract)."""
        return asdict(self)

    def image_paths(self) -> list[str]:
        """The item's images as a list (empty for text-only items)."""
        if self.image is None:
            return []
        return [self.image] if isinstance(self.image, str) else list(self.image)
