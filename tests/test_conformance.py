"""The conformance matrix over every model family the toolkit claims (replicas: real tokenizer, template and
processor; tiny random weights), run through stage 03's and stage 04's own code; docs/conformance.md must be the
table this run produces."""

from __future__ import annotations

import pytest
from conftest import REPO

from mllm_safety.tools.conformance import COLUMNS, END_OF_TURN, UNSUPPORTED, check_family, markdown


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("conformance")
    return {family: check_family(family, work) for family in END_OF_TURN}


@pytest.mark.parametrize("family", sorted(set(END_OF_TURN) - set(UNSUPPORTED)))
def test_every_claimed_family_passes_every_column(matrix, family):
    row = matrix[family]
    assert {c: row.cells[c] for c in COLUMNS if row.cells[c] != "ok"} == {}


@pytest.mark.parametrize("family", sorted(UNSUPPORTED))
def test_an_unsupported_family_is_refused_before_loading_naming_itself(matrix, family):
    assert all("refused" in cell and family in cell for cell in matrix[family].cells.values())


def test_the_documented_matrix_is_this_runs(matrix):
    assert (REPO / "docs" / "conformance.md").read_text(encoding="utf-8") == markdown(list(matrix.values()))
