"""The notebooks follow the cell layout of notebooks/README.md: a markdown cell stating the task,
the Colab-aware set-up cell, exactly one `parameters` cell, no outputs (see also
tests/tools/test_nbclean.py and the naming rules in ARCHITECTURE.md)."""
import json
from pathlib import Path

import pytest

from kdutils.tools.nbclean import dirty_cells

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_clean_and_parameterised(path):
    nb = json.loads(path.read_text())
    assert dirty_cells(nb) == 0, f"{path.name} carries outputs: run `make strip`"
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown", "the first cell states the task"
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell is tagged `parameters`"
    src = "".join(cells[1]["source"]) if cells[1]["cell_type"] == "code" else ""
    assert "google.colab" in src, "the second cell is the Colab-aware set-up cell"
