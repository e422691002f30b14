"""nbclean: counting cells with outputs, stripping them, the --check command line. (That the
repository's notebooks are committed clean is checked in tests/test_notebooks.py.)"""
import json

from kdutils.tools.nbclean import dirty_cells, main, strip


def _executed_notebook() -> dict:
    return {
        "metadata": {"kernelspec": {"name": "python3"}, "papermill": {"duration": 3.2}},
        "nbformat": 4, "nbformat_minor": 5,
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Task"]},
            {"cell_type": "code", "execution_count": 3, "source": ["print(1)"],
             "metadata": {"tags": ["parameters"], "execution": {"iopub.status.busy": "x"},
                          "papermill": {"status": "done"}},
             "outputs": [{"output_type": "stream", "name": "stdout", "text": ["1\n"]}]},
            {"cell_type": "code", "execution_count": 4, "source": ["x = 2"], "metadata": {}, "outputs": []},
            {"cell_type": "code", "execution_count": None, "source": ["y = 3"], "metadata": {}, "outputs": []},
        ],
    }


def test_dirty_cells_counts_outputs_and_execution_counts():
    assert dirty_cells(_executed_notebook()) == 2  # the cell with output, the one with only a count
    assert dirty_cells({"cells": []}) == 0 and dirty_cells({}) == 0


def test_strip_removes_outputs_counts_and_run_metadata_only():
    nb = strip(_executed_notebook())
    assert dirty_cells(nb) == 0
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert code[0]["metadata"] == {"tags": ["parameters"]}  # the papermill tag stays
    assert "papermill" not in nb["metadata"] and nb["metadata"]["kernelspec"] == {"name": "python3"}
    assert nb["cells"][0] == {"cell_type": "markdown", "metadata": {}, "source": ["# Task"]}
    assert [c["source"] for c in nb["cells"]] == [["# Task"], ["print(1)"], ["x = 2"], ["y = 3"]]
    assert strip(json.loads(json.dumps(nb))) == nb  # stripping twice changes nothing


def test_command_line_check_then_strip(tmp_path, capsys):
    dirty, clean = tmp_path / "dirty.ipynb", tmp_path / "clean.ipynb"
    dirty.write_text(json.dumps(_executed_notebook()))
    clean.write_text(json.dumps(strip(_executed_notebook())))
    assert main(["--check", str(dirty), str(clean)]) == 1
    out = capsys.readouterr().out
    assert "dirty.ipynb: 2 cells" in out and "make strip" in out and "clean.ipynb" not in out
    assert json.loads(dirty.read_text()) == _executed_notebook()  # --check writes nothing
    assert main([str(dirty)]) == 0
    assert dirty_cells(json.loads(dirty.read_text())) == 0
    assert dirty.read_text().endswith("\n")
    assert main(["--check", str(dirty), str(clean)]) == 0
