"""What a reader meets in JupyterLab: the smoke run's executed notebooks rendered to HTML by nbconvert (the
notebooks are executed once per session, by tests/test_notebooks.py's fixture): a bounded size, no saved widget
state, no library noise or frozen progress bars, and tables that show display labels, not internal keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbconvert import HTMLExporter
from test_notebooks import smoke_run  # noqa: F401  (the session's smoke run, executed once)

from mllm_safety.core.catalogue import entries
from mllm_safety.pipeline import NOTEBOOKS

pytestmark = pytest.mark.notebook

HTML_MAX = 1_000_000  # bytes of a notebook's HTML (figures included); notebook 06 holds every figure
HTML_MAX_BY_STAGE = {"06": 2_500_000}
WIDGET_STATE_MAX = 1_000  # bytes of saved widget state (a tqdm widget bar saves a few kB each)
# lines a reader should never see: the libraries' loading bars, tqdm's frozen text fallback, the Trainer's table
NOISE = (
    "Loading checkpoint shards",
    "Loading weights",
    "0%|",
    "it/s]",
    "Training Loss",
    "Kernel is running over TCP",
)
# keys that have a display label must not be a table cell (the label is); the official mixture's file-style name
RAW_KEYS = ("mis_easy", "mis_hard", "mis_benign_hard", *(b.key for b in entries() if b.label))
RAW_PATTERNS = (r"\d+_llava_med_instruct_60k_inline_mention_\d+_llava_v1_5_mix665k",)
OWN_TABLES = ("01", "02", "03", "04", "06")  # the notebooks whose tables this rule covers (00 and 05 list keys)


def html(path: Path, outputs_only: bool = False) -> str:
    """The notebook as JupyterLab's HTML export shows it (only the outputs if asked)."""
    exporter = HTMLExporter(template_name="lab", exclude_input=outputs_only)
    body, _ = exporter.from_notebook_node(nbformat.read(path, as_version=4))
    return body


@pytest.fixture(scope="module")
def executed(smoke_run) -> dict[str, Path]:  # noqa: F811
    """Stage -> its executed notebook."""
    return {stage: smoke_run / "executed" / name for stage, name in NOTEBOOKS.items()}


def tables(page: str) -> list[dict[str, list[str]]]:
    """Every table of an HTML page as column name -> the text of its body cells (index cells left out)."""
    from bs4 import BeautifulSoup

    found = []
    for table in BeautifulSoup(page, "html.parser").find_all("table"):
        rows = [[td.get_text(strip=True) for td in tr.find_all("td")] for tr in table.find("tbody").find_all("tr")]
        width = max(map(len, rows), default=0)
        head = table.find("thead")
        names = [th.get_text(strip=True) for th in head.find("tr").find_all("th")][-width:] if head and width else []
        found.append({name: [r[k] for r in rows if len(r) == width] for k, name in enumerate(names)})
    return found


def table_cells(page: str) -> list[str]:
    """The text of every table cell (th and td) of an HTML page."""
    cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", page, flags=re.S)
    return [re.sub(r"<[^>]+>", "", c).strip() for c in cells]


@pytest.mark.parametrize("stage", sorted(NOTEBOOKS))
def test_the_html_has_a_bounded_size_and_no_widget_state(executed, stage):
    nb = nbformat.read(executed[stage], as_version=4)
    widgets = nb.metadata.get("widgets", {})
    assert len(json.dumps(widgets)) <= WIDGET_STATE_MAX, stage
    size = len(html(executed[stage]).encode())
    assert size <= HTML_MAX_BY_STAGE.get(stage, HTML_MAX), (stage, size)


def plain_texts(path: Path) -> str:
    """Every output's plain text: what JupyterLab shows of a widget whose state was not saved, and of streams."""
    outputs = [o for c in nbformat.read(path, as_version=4).cells for o in c.get("outputs", [])]
    return "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)


@pytest.mark.parametrize("stage", sorted(NOTEBOOKS))
def test_no_library_noise_or_frozen_bar_in_the_outputs(executed, stage):
    page = html(executed[stage], outputs_only=True) + plain_texts(executed[stage])
    seen = [noise for noise in NOISE if noise in page]
    assert not seen, (stage, seen)


@pytest.mark.parametrize("stage", OWN_TABLES)
def test_tables_show_labels_not_internal_keys(executed, stage):
    cells = table_cells(html(executed[stage], outputs_only=True))
    raw = sorted({c for c in cells if c in RAW_KEYS or any(re.fullmatch(p, c) for p in RAW_PATTERNS)})
    assert not raw, (stage, raw)


COUNTS = ("n", "items", "count", "records", "answers", "refusals")  # columns that count things


@pytest.mark.parametrize("stage", ("01", "04"))
def test_counts_are_integers_and_rates_have_two_decimals_at_most(executed, stage):
    for table in tables(html(executed[stage], outputs_only=True)):
        for name, cells in table.items():
            if name in COUNTS:
                assert all(re.fullmatch(r"\d+", c) for c in cells), (stage, name, cells)  # never 4.0
            decimals = {len(m) for c in cells for m in re.findall(r"\b\d+\.(\d+)\b", c)}
            assert max(decimals, default=2) <= 2, (stage, name, cells)  # one rounding: two decimals
