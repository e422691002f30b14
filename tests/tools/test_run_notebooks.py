"""The notebook runner (kdutils.tools.run_notebooks): every part notebook headlessly, going on
past a failure, with its exit codes."""
import json

import pytest

from kdutils.tools import run_notebooks
from tests.helpers import write_notebook


def _notebook(path, body):
    return write_notebook(path, 'profile = ""', body)


def test_run_notebooks_goes_on_past_a_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_OUTPUT_ROOT", str(tmp_path / "out"))  # inherited by the child processes
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "part1_fails.ipynb", "raise RuntimeError('part one broke')")
    _notebook(folder / "part2_works.ipynb",
              "import os\nassert os.environ['KD_HEADLESS'] == '1' and profile == 'smoke'\n"
              "open('ran.txt', 'w').write(os.getcwd())")
    _notebook(folder / "report.ipynb", "raise AssertionError('the report notebook is not a part')")

    assert [p.name for p in run_notebooks.part_notebooks(["part2"], folder)] == ["part2_works.ipynb"]
    with pytest.raises(ValueError, match="part5"):
        run_notebooks.part_notebooks(["part5"], folder)

    summary = run_notebooks.run_all("smoke", folder=folder, log=None)
    assert [(e["run"], e["status"]) for e in summary] == [("part1_fails", "failed"), ("part2_works", "ok")]
    runs = tmp_path / "out" / "runs" / "smoke"
    assert (runs / "part2_works.ipynb").is_file() and (runs / "part1_fails.ipynb").is_file()
    assert (folder / "ran.txt").read_text() == str(folder)  # the notebook's folder is the cwd
    failure = json.loads((runs / "failures" / "part1_fails.json").read_text())
    assert "part one broke" in failure["error_tail"] and failure["profile"] == "smoke"
    assert json.loads((runs / "summary.json").read_text())["notebooks"][1]["status"] == "ok"


def test_run_notebooks_cli_exit_codes(monkeypatch, tmp_path):
    monkeypatch.setattr(run_notebooks, "NOTEBOOKS_DIR", tmp_path)
    assert run_notebooks.main(["--profile", "smoke"]) == 2  # no part notebooks there
    assert run_notebooks.main(["--profile", "nonsense"]) == 2
    calls = []

    def one_failure(*args, **kwargs):
        calls.append(args)
        return [{"run": "part1", "status": "failed"}]

    monkeypatch.setattr(run_notebooks, "run_all", one_failure)
    assert run_notebooks.main(["--profile", "smoke", "--only", "part1"]) == 1
    assert calls == [("smoke", ["part1"])]
