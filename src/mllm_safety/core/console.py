"""What a user sees while stages run: progress bars, and known harmless library warnings kept out of the way.

Only warnings listed in KNOWN_NOISE are filtered, each for a stated reason; our own warnings and errors always
show. `inner_bars_off()` silences the per-step bars (generation, encoding, training, weight loading) while one
outer bar counts the work, as the studies do in notebook 05.

Every bar of the package is made here (`bar`, `progress`). In a terminal they are tqdm bars; inside a notebook
kernel (JupyterLab, papermill) a step that lasts longer than NOTEBOOK_BAR["delay"] seconds shows one plain-text
output, updated in place, that ends at its final count (`PlainLine`), because a widget bar saves as a frozen
`0%| | 0/20` and as widget state that bloats the saved notebook, and text written with carriage returns saves as
one line per redraw; the libraries' own bars (weight loading, downloads) stay off there.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm as plain_tqdm
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
# a bar inside a notebook: plain text, silent for short steps, few redraws, its last line kept
NOTEBOOK_BAR = {
    "bar_format": "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}]",
    "delay": 3.0,
    "mininterval": 2.0,
    "ascii": True,
    "leave": True,
}


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


def library_bars_off() -> None:
    """Turn off the progress bars of huggingface_hub and transformers (weight loading, downloads), imported or not."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read by both libraries when they are first imported
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def in_notebook() -> bool:
    """True inside a notebook kernel (JupyterLab or a papermill run), where output is saved with the notebook."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


class PlainLine(plain_tqdm):
    """A tqdm bar drawn as one plain-text notebook output that each redraw replaces (an IPython display handle),
    so the saved notebook holds its last state: one line, at the final count."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.handle = None
        super().__init__(*args, file=io.StringIO(), **kwargs)  # tqdm's own writes (a closing newline) go nowhere

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        from IPython.display import display

        text = {"text/plain": msg or str(self)}
        if self.handle is None:
            self.handle = display(text, raw=True, display_id=True)
        else:
            self.handle.update(text, raw=True)
        return True


def progress(iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """An outer progress bar: tqdm's in a terminal, one plain-text line in a notebook (PlainLine, NOTEBOOK_BAR)."""
    if in_notebook():
        return PlainLine(iterable, **{**kwargs, **NOTEBOOK_BAR})
    return tqdm(iterable, **kwargs)


def bar(iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """A per-step progress bar that disappears when done (a plain line in a notebook), and stays off inside
    `inner_bars_off()`."""
    kwargs.setdefault("leave", False)
    return progress(iterable, disable=not _STATE["inner_bars"] or kwargs.pop("disable", False), **kwargs)


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
    """A notebook's first call: the repository root as working directory (as the CLI sees it), warnings filtered,
    the libraries' own progress bars off (ours print plain lines)."""
    import pandas as pd

    from .layout import enter_repo_root

    enter_repo_root()
    quiet_known_warnings()
    library_bars_off()
    pd.set_option("display.max_colwidth", None)  # a table shows whole answers, not their first 50 characters
