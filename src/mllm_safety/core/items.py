"""The in-memory schema of every benchmark question, apart from the loaders so that a loader module (core.mis)
and the dispatcher (core.benchmarks) can both use it without importing each other; and the checks every item
passes before any model loads (a question to ask, images a model can take)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .files import DataFormatError, drop_or_fail
from .images import image_problem
from .vocabulary import as_list

SKIP_HINT = "or set missing_images: skip in the benchmark's entry to leave those items out (they are counted)"


@dataclass(frozen=True)
class EvalItem:
    """One benchmark question, the in-memory schema of every benchmark: image is a path, a list of paths
    (multi-image) or None."""

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
        return as_list(self.image)


def prompt_problem(item: EvalItem) -> str | None:
    """Why an item's question cannot be asked (not text, or blank), or None."""
    if not isinstance(item.prompt, str):
        return f"the question is {type(item.prompt).__name__}, expected text"
    return None if item.prompt.strip() else "the question is blank"


def check_prompts(items: list[EvalItem], source: Path) -> None:
    """Refuse items whose question is not text or is blank, naming the first and how many."""
    bad = [(it, why) for it in items if (why := prompt_problem(it))]
    if bad:
        item, why = bad[0]
        raise DataFormatError(
            f"{source}: item {item.id!r}: {why} ({len(bad)} such item(s)). Fix: write the question, or remove the item"
        )


def filter_missing_images(items: list[EvalItem], source: Path, missing: str) -> list[EvalItem]:
    """Fail (default) or skip items whose image files do not exist, reporting how many and the first few."""
    missing_paths = [[p for p in it.image_paths() if not Path(p).is_file()] for it in items]
    bad = [i for i, paths in enumerate(missing_paths) if paths]
    first = ", ".join(f"{items[i].id} -> {missing_paths[i][0]}" for i in bad[:5])
    msg = f"{source}: {len(bad)} of {len(items)} item(s) have missing image files; first: {first}"
    return drop_or_fail(items, bad, msg, f"check the images folder, {SKIP_HINT}", missing)


def _first_unusable(paths: list[str], seen: dict[str, str | None]) -> tuple[str, str] | None:
    """The first of an item's images a model cannot take and why (each file read once per check), or None."""
    for path in paths:
        if path not in seen:
            seen[path] = image_problem(path)
        if why := seen[path]:
            return path, why
    return None


def filter_unusable_images(items: list[EvalItem], source: Path, policy: str) -> list[EvalItem]:
    """Fail (default) or skip items with an image a model cannot take (unreadable, or more pixels than PIL
    decodes), read from the files' headers before any model loads."""
    seen: dict[str, str | None] = {}
    found = [_first_unusable(it.image_paths(), seen) for it in items]
    bad = [i for i, problem in enumerate(found) if problem]
    first = "; ".join(f"{items[i].id} -> {found[i][0]}: {found[i][1]}" for i in bad[:3])  # type: ignore[index]
    msg = f"{source}: {len(bad)} of {len(items)} item(s) have an image a model cannot take; first: {first}"
    policy = "fail" if len(bad) == len(items) else policy  # skipping every item would leave nothing to evaluate
    return drop_or_fail(items, bad, msg, f"shrink or replace those images, {SKIP_HINT}", policy)
