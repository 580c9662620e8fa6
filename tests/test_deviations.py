"""docs/deviations.md, section "Every key of the real presets": one row per preset key, checked against the
configs, so that a key added to a stage config without a row (or a row left for a removed key) fails here."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from mllm_safety.core.config import known_keys
from mllm_safety.core.preset import load_preset, shipped_presets

DOC = Path(__file__).resolve().parents[1] / "docs" / "deviations.md"
SECTION = "## Every key of the real presets"
COLUMNS = ["key", "ours (per preset where they differ)", "official (value, source file:line)", "same?", "why"]
SAME = {"yes", "no", "partly", "—", "unknown"}  # the vocabulary of the "same?" column
EMPTY = {"", "—", "-"}  # a "why" that gives no reason
NOT_REAL = {"toy", "smoke"}  # the organism presets; every other file in params/ is a real preset


def cells(line: str) -> list[str]:
    """The cells of one markdown table row; an escaped pipe (\\|) stays inside its cell."""
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [c.replace("\\|", "|").strip() for c in re.split(r"(?<!\\)\|", inner)]


def section(text: str) -> str:
    """The text of the section, up to the next heading of the same or a higher level."""
    start = text.index(SECTION)  # ValueError: the section is missing
    rest = text[start + len(SECTION) :]
    end = re.search(r"^#{1,2} ", rest, flags=re.MULTILINE)
    return rest[: end.start()] if end else rest


def table(text: str) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of the section's first table."""
    lines = section(text).splitlines()
    first = next(i for i, line in enumerate(lines) if line.lstrip().startswith("|"))
    block = []
    for line in lines[first:]:
        if not line.lstrip().startswith("|"):
            break
        block.append(line)
    header, rule, *rows = block
    assert set(rule.replace("|", "").strip()) <= set("-: "), f"second table line is not a rule: {rule!r}"
    return cells(header), [cells(r) for r in rows]


def row_key(row: list[str]) -> str:
    """The key a row names: its first cell, `in backticks`."""
    match = re.fullmatch(r"`([A-Za-z0-9_]+)`", row[0])
    assert match, f"the key cell must be one `key`: {row[0]!r}"
    return match.group(1)


def key_problems(rows: list[list[str]], keys: set[str]) -> list[str]:
    """Every way the rows fail to cover `keys` once each: missing keys, repeated rows, rows for unknown keys."""
    counts = Counter(row_key(r) for r in rows)
    problems = [f"no row for key {k!r}" for k in sorted(keys - set(counts))]
    problems += [f"{n} rows for key {k!r}" for k, n in sorted(counts.items()) if n > 1]
    problems += [f"row for unknown key {k!r}" for k in sorted(set(counts) - keys)]
    return problems


def row_problems(rows: list[list[str]]) -> list[str]:
    """Rows whose "same?" is outside the vocabulary, that differ without a reason, or whose columns disagree."""
    problems = []
    for row in rows:
        key, _ours, official, same, why = row
        verdict = same.split()[0] if same else ""
        if verdict not in SAME:
            problems.append(f"{key}: same? {same!r} is not one of {sorted(SAME)}")
        if verdict != "yes" and why in EMPTY:
            problems.append(f"{key}: same? is {verdict!r} but the why column is empty")
        if (verdict == "—") != (official == "—"):
            problems.append(f"{key}: official {official[:30]!r} and same? {same!r} disagree about a counterpart")
        if verdict == "unknown" and not official.startswith("not found in"):
            problems.append(f"{key}: same? is unknown but official does not say where it was looked for")
    return problems


@pytest.fixture(scope="module")
def parsed() -> tuple[list[str], list[list[str]]]:
    return table(DOC.read_text(encoding="utf-8"))


def test_the_table_has_the_five_columns(parsed):
    header, rows = parsed
    assert header == COLUMNS
    assert rows, "the table has no rows"
    assert all(len(r) == len(COLUMNS) for r in rows), [r[0] for r in rows if len(r) != len(COLUMNS)]


def test_every_known_key_has_exactly_one_row_and_no_row_names_an_unknown_key(parsed):
    _, rows = parsed
    assert key_problems(rows, known_keys()) == []


def test_rows_that_differ_give_a_reason(parsed):
    _, rows = parsed
    assert row_problems(rows) == []


def test_every_real_preset_is_named_and_sets_only_known_keys():
    text = section(DOC.read_text(encoding="utf-8"))
    real = [p for p in shipped_presets() if p not in NOT_REAL]
    assert real, "no real preset in params/"
    for preset in real:
        assert f"`{preset}`" in text, f"the section does not name the real preset {preset!r}"
        assert set(load_preset(preset)) <= known_keys()


def test_a_key_without_a_row_is_caught(parsed):
    """The check itself: a new config key, a dropped row, a repeated row and a stale row are each reported."""
    _, rows = parsed
    keys = known_keys()
    assert key_problems(rows, keys | {"new_key"}) == ["no row for key 'new_key'"]
    first = row_key(rows[0])
    assert key_problems(rows[1:], keys) == [f"no row for key {first!r}"]
    assert key_problems([*rows, rows[0]], keys) == [f"2 rows for key {first!r}"]
    assert key_problems(rows, keys - {first}) == [f"row for unknown key {first!r}"]
    unexplained = [row_key(rows[0]), "x", "y", "no", "—"]
    assert row_problems([unexplained]) == [f"{unexplained[0]}: same? is 'no' but the why column is empty"]


def test_cells_keep_escaped_pipes():
    assert cells("| `a` | x \\| y | z |") == ["`a`", "x | y", "z"]
