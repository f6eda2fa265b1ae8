"""The notebooks in ``docs/notebooks`` are clean, current-format files (the docs build runs them).

Every cell has an ``id`` (nbformat 4.5: a missing one is a warning today and "will become a hard
error in future nbformat versions"), and no outputs or execution counts are stored: they would go
stale with the code and bloat the diffs.
"""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "docs" / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_cells_have_ids_and_no_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert (nb["nbformat"], nb["nbformat_minor"]) >= (4, 5)
    cells = nb["cells"]
    assert [i for i, c in enumerate(cells) if "id" not in c] == []
    assert len({c["id"] for c in cells}) == len(cells)  # unique
    code = [c for c in cells if c["cell_type"] == "code"]
    assert [i for i, c in enumerate(code) if c["outputs"] or c["execution_count"] is not None] == []
