"""The sweep driver on a tiny notebook: one run succeeds, one fails, re-runs skip."""
import json

import nbformat
import pytest

from kdutils.core import records
from kdutils.tools import sweep

PART = "sweeptest"


def _tiny_notebook(path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('run_name = "unnamed"\nfail = False\nprofile = "smoke"\nT = 1.0')
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import os\n"
        "from kdutils.core import records\n"
        "assert os.environ['KD_HEADLESS'] == '1'\n"
        "if fail:\n"
        "    raise RuntimeError('asked to fail')\n"
        f"rec = records.new_record({PART!r}, run_name, profile, params={{'T': T, 'fail': fail}})\n"
        "rec['status'] = 'complete'\n"
        "rec['best'] = {'test_top1': 10.0 * T}\n"
        "records.save_record(rec)\n"
    )
    nb.cells = [params, body]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def test_sweep_runs_records_failures_and_skips(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_OUTPUT_ROOT", str(tmp_path))  # inherited by the child process
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    sets = [{"run_name": "bad", "fail": True}, {"run_name": "good", "T": 1e-05}]

    first = sweep.run_sweep(nb, sets, part=PART, profile="smoke", name="demo", log=None)
    assert [(e["run"], e["status"]) for e in first] == [("bad", "failed"), ("good", "ok")]

    rec = records.load_record(PART, "good", "smoke")
    assert records.is_finished(rec)
    assert rec["params"]["T"] == 1e-05  # parameters arrive with their types
    assert (tmp_path / "runs" / "demo" / "good.ipynb").is_file()

    failure = json.loads((tmp_path / "runs" / "demo" / "failures" / "bad.json").read_text())
    assert failure["run"] == "bad" and failure["returncode"] != 0
    assert "asked to fail" in failure["error_tail"]
    assert "RuntimeError" in failure["error"]
    assert records.load_record(PART, "bad", "smoke") is None

    second = sweep.run_sweep(nb, sets, part=PART, profile="smoke", name="demo", log=None)
    assert [(e["run"], e["status"]) for e in second] == [("bad", "failed"), ("good", "skipped")]
    summary = json.loads((tmp_path / "runs" / "demo" / "summary.json").read_text())
    assert [r["status"] for r in summary["runs"]] == ["failed", "skipped"]

    table = sweep.aggregate(PART, "smoke", x="params.T", y="params.fail", value="best.test_top1")
    assert table.shape == (1, 1) and table.iloc[0, 0] == pytest.approx(1e-04)


def test_grid_names_and_cli_dry_run(capsys):
    sets = sweep.grid(sweep.parse_assignments(["T=5,10,20", "lam=0.1,0.5"]), {"epochs": 2})
    assert [s["run_name"] for s in sets][:3] == ["T5_lam0.1", "T5_lam0.5", "T10_lam0.1"]
    assert len(sets) == 6 and all(s["epochs"] == 2 for s in sets)
    assert sweep.parse_value("1e-3") == 0.001 and sweep.parse_value("true") is True
    rnd = sweep.random_sets(4, seed=1)
    assert len({s["run_name"] for s in rnd}) == 4 and rnd == sweep.random_sets(4, seed=1)
    with pytest.raises(ValueError, match="run_name"):
        sweep.run_sweep(__file__, [{"T": 1}], part=PART, profile="smoke")
    rc = sweep.main(["x.ipynb", "--part", "part3", "--profile", "smoke", "--grid", "T=5,10", "lam=0.1", "--dry-run"])
    assert rc == 0
    out = capsys.readouterr().out
    assert '"run_name": "T10_lam0.1"' in out and "2 runs" in out
