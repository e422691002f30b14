"""The notebooks follow the cell layout of notebooks/README.md: a markdown cell stating the task,
the Colab-aware set-up cell, exactly one `parameters` cell, and what `make strip` (nbstripout)
leaves: no outputs, no execution counts, no widget or papermill metadata (see also the naming
rules in ARCHITECTURE.md)."""
import json
from pathlib import Path

import nbformat
import pytest

NBSTRIPOUT_KEYS = ["metadata.signature", "metadata.widgets", "metadata.papermill", "cell.metadata.papermill",
                   "cell.metadata.collapsed", "cell.metadata.ExecuteTime", "cell.metadata.execution",
                   "cell.metadata.scrolled"]  # nbstripout's defaults + the Makefile's NBSTRIPOUT_KEYS


def stripped(nb):
    """``nb`` as `make strip` leaves it (nbstripout's own function, cell ids kept)."""
    from nbstripout import strip_output

    return strip_output(nbformat.from_dict(json.loads(json.dumps(nb))), keep_output=False, keep_count=False,
                        keep_id=True, extra_keys=NBSTRIPOUT_KEYS)

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_clean_and_parameterised(path):
    nb = json.loads(path.read_text())
    assert stripped(nb) == nb, f"{path.name} carries outputs or run metadata: run `make strip`"
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown", "the first cell states the task"
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell is tagged `parameters`"
    src = "".join(cells[1]["source"]) if cells[1]["cell_type"] == "code" else ""
    assert "google.colab" in src, "the second cell is the Colab-aware set-up cell"


def test_strip_check_sees_outputs_counts_and_widgets():
    """The check above fails on what a run leaves behind (so it is not vacuous)."""
    clean = {"metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4, "nbformat_minor": 5,
             "cells": [{"cell_type": "code", "id": "a1", "execution_count": None, "metadata": {"tags": ["parameters"]},
                        "outputs": [], "source": "x = 1"}]}
    assert stripped(clean) == clean
    executed = json.loads(json.dumps(clean))
    executed["cells"][0].update(execution_count=3, outputs=[{"output_type": "stream", "name": "stdout", "text": "1"}])
    widgets = json.loads(json.dumps(clean))
    widgets["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    for dirty in (executed, widgets):
        assert stripped(dirty) != dirty and stripped(dirty) == clean


# --------------------------------------------------------------------------- statements vs settings
WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}


def markdown_text(name: str) -> str:
    return "\n".join("".join(c["source"]) for c in json.loads((NOTEBOOKS[0].parent / name).read_text())["cells"]
                     if c["cell_type"] == "markdown")


def test_part4_text_states_the_settings():
    """Part 4's reading (shown by the notebook and printed on the report) names the quick
    profile's epochs and faces and the full profile's split and epochs: they match SETTINGS."""
    import re

    from kdutils.parts import part4

    settings = part4.SETTINGS
    quick, full = settings["quick"], settings["full"]
    found = re.search(r"in (\w+) epochs on (\d+) faces", part4.OPINION)
    if found:  # ORL: 40 subjects (the notebook's first cell)
        assert WORDS.get(found.group(1), found.group(1)) in (quick["epochs"], str(quick["epochs"]))
        assert int(found.group(2)) == 40 * quick["n_train"]
    found = re.search(r"(\d+)/(\d+) faces per subject, (\d+) epochs", part4.OPINION)
    if found:
        assert tuple(map(int, found.groups())) == (full["n_train"], full["n_test"], full["epochs"])
    intro = markdown_text("part4_lwf_faces.ipynb")
    split = re.search(r"`quick` uses the ORL faces \(40 subjects x 10 greyscale images, (\d+)/(\d+) per subject\)", intro)
    assert split is None or tuple(map(int, split.groups())) == (quick["n_train"], quick["n_test"])


def test_part1_text_does_not_contradict_the_cpu_precision_choice():
    """fit measures bf16 / channels-last on a CPU and may keep them (kdutils.core.precision):
    no notebook may say they stay off there."""
    from kdutils.core import precision

    assert hasattr(precision, "choose_cpu_settings")
    for path in NOTEBOOKS:
        assert "stay off on a CPU" not in markdown_text(path.name), path.name
