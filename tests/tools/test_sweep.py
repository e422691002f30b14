"""The sweep command on a tiny notebook: a grid study where one run succeeds, one fails, a rerun continues."""
import json
from pathlib import Path

import pytest

from kdutils.core import records
from kdutils.tools import sweep
from tests.helpers import write_notebook

PART_NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "part3_cifar10_resnet18_kd.ipynb"
PART = "sweeptest"


def _tiny_notebook(path):
    return write_notebook(path, 'run_name = "unnamed"\nfail = False\nprofile = "smoke"\nT = 1.0', (
        "import os\n"
        "from kdutils.core import records\n"
        "assert os.environ['KD_HEADLESS'] == '1'\n"
        "if fail:\n"
        "    raise RuntimeError('asked to fail')\n"
        f"rec = records.new_record({PART!r}, run_name, profile, params={{'T': T, 'fail': fail}})\n"
        "rec['status'] = 'complete'\n"
        "rec['best'] = {'test_top1': 10.0 * T}\n"
        "records.save_record(rec)\n"
    ))


def test_grid_study_runs_records_failures_and_retries_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KD_OUTPUT_ROOT", str(tmp_path))  # inherited by the child process
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    args = [str(nb), "--part", PART, "--profile", "smoke", "--grid", "fail=true,false", "--set", "T=1e-05",
            "--metric", "best.test_top1", "--name", "demo"]

    assert sweep.main(args) == 1  # one trial failed
    out = capsys.readouterr().out
    assert "study demo (" in out and "1 complete, 1 fail" in out, out
    rec = records.load_record(PART, "failFalse", "smoke")
    assert records.is_finished(rec)
    assert rec["params"]["T"] == 1e-05  # parameters arrive with their types
    assert (tmp_path / "runs" / "demo" / "failFalse.ipynb").is_file()

    failure = json.loads((tmp_path / "runs" / "demo" / "failures" / "failTrue.json").read_text())
    assert failure["run"] == "failTrue" and failure["returncode"] != 0 and failure["study"] == "demo"
    assert "asked to fail" in failure["error_tail"]
    assert "RuntimeError" in failure["error"]
    assert records.load_record(PART, "failTrue", "smoke") is None

    assert sweep.main(args) == 1  # the rerun continues the study: the failed point again, the finished one not
    out = capsys.readouterr().out
    assert "1 complete, 2 fail" in out and "failFalse: running" not in out, out

    table = sweep.aggregate(PART, "smoke", x="params.T", y="params.fail", value="best.test_top1")
    assert table.shape == (1, 1) and table.iloc[0, 0] == pytest.approx(1e-04)


def test_grid_names_and_cli_dry_run(capsys):
    sets = sweep.grid(sweep.parse_assignments(["T=5,10,20", "lam=0.1,0.5"]), {"epochs": 2})
    assert [s["run_name"] for s in sets][:3] == ["T5_lam0.1", "T5_lam0.5", "T10_lam0.1"]
    assert len(sets) == 6 and all(s["epochs"] == 2 for s in sets)
    assert sweep.parse_value("1e-3") == 0.001 and sweep.parse_value("true") is True
    rc = sweep.main([str(PART_NOTEBOOK), "--part", "part3", "--profile", "smoke", "--grid", "T=5,10", "lam=0.1",
                     "--dry-run"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "study part3-smoke-grid: 2 trials" in out and "sampler grid" in out and "{'T': [5, 10], 'lam': [0.1]}" in out
    assert '"run_name": "T10_lam0.1"' in out


@pytest.mark.parametrize("name", ["..", ".", "a/b"])
def test_sweep_refuses_a_name_that_is_not_one_folder(tmp_path, capsys, name):
    """Issue 13: ``sweep --name ..`` wrote into the output root; now it stops with exit code 2."""
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    rc = sweep.main([str(nb), "--part", PART, "--profile", "smoke", "--grid", "T=1", "--name", name])
    assert rc == 2
    err = capsys.readouterr().err
    assert repr(name) in err and "may only use letters, digits" in err
    assert not (tmp_path / "out" / "runs" / "summary.json").exists()
