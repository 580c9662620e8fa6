"""What a user sees while stages run: progress bars, and known harmless library warnings kept out of the way.

Only warnings listed in KNOWN_NOISE are filtered, each for a stated reason; our own warnings and errors always
show. `inner_bars_off()` silences the per-step bars (generation, encoding, training, weight loading) while one
outer bar counts the work, as the studies do in notebook 05.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm

# (logger or warning category, message start, why it is harmless)
KNOWN_NOISE = (
    (
        "bitsandbytes.backends.cpu.ops",
        "Failed to load CPU gemm_4bit_forward",
        "an optional faster CPU kernel from the hub; bitsandbytes falls back to its own CPU code",
    ),
    (
        "transformers.utils.generic",
        "`use_cache=True` is incompatible with gradient checkpointing",
        "training never uses the generation cache; transformers switches it off, as intended",
    ),
    (FutureWarning, "", "transformers and peft deprecation notices about their own internals"),
)
_STATE = {"inner_bars": True}


class _DropKnown(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.start)


def quiet_known_warnings() -> None:
    """Filter the warnings of KNOWN_NOISE (idempotent; call before the libraries are imported when possible)."""
    for source, start, _why in KNOWN_NOISE:
        if isinstance(source, str):
            logger = logging.getLogger(source)
            if not any(isinstance(f, _DropKnown) and f.start == start for f in logger.filters):
                logger.addFilter(_DropKnown(start))
        else:
            for module in ("transformers", "peft", "accelerate"):
                warnings.filterwarnings("ignore", message=start, category=source, module=module)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the fork warning of HF tokenizers


def bar(iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """A progress bar that disappears when done, and stays off inside `inner_bars_off()`."""
    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=not _STATE["inner_bars"] or kwargs.pop("disable", False), **kwargs)


def inner_bars_enabled() -> bool:
    """False inside `inner_bars_off()`."""
    return _STATE["inner_bars"]


@contextmanager
def inner_bars_off() -> Iterator[None]:
    """Silence per-step bars (ours and transformers' weight-loading bars) while an outer bar counts the work."""
    from transformers.utils import logging as hf_logging

    previous, was_enabled = _STATE["inner_bars"], hf_logging.is_progress_bar_enabled()
    _STATE["inner_bars"] = False
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        _STATE["inner_bars"] = previous
        if was_enabled:
            hf_logging.enable_progress_bar()


def notebook_setup() -> None:
    """A notebook's first call: the repository root as working directory (as the CLI sees it), warnings filtered."""
    from .layout import enter_repo_root

    enter_repo_root()
    quiet_known_warnings()
