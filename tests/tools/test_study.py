"""``kdutils.tools.study``: workers sharing one SQLite Optuna study, a killed worker, a rerun.

The notebook of the worker test is a tiny one written here (a record with a metric after a
short sleep), so that the test measures the study machinery, not training.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from kdutils.tools import study as S
from kdutils.tools.processes import _descendants

REPO = Path(__file__).resolve().parents[2]
GRID = ["T=1,2,3", "lam=0.1"]

TOY = {
    "cells": [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None, "outputs": [],
         "source": 'profile = "smoke"\nrun_name = ""\nT = 1.0\nlam = 0.1\nsleep = 0.0\nforce = False\n'},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": "import time\nfrom kdutils.core import records as R\ntime.sleep(sleep)\n"
                   "rec = R.new_record('toy', run_name, profile, {'T': T, 'lam': lam})\n"
                   "rec.update(status='complete', val={'top1': T * lam})\nR.save_record(rec)\n"},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def _worker(tmp_path: Path, storage: str, sleep: float, extra: tuple = ()) -> subprocess.Popen:
    env = dict(os.environ, KD_OUTPUT_ROOT=str(tmp_path / "out"), KD_CACHE_DIR=str(tmp_path / "cache"),
               OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "kdutils.tools.sweep", str(tmp_path / "toy.ipynb"), "--part", "toy", "--profile",
           "smoke", "--grid", *GRID, "--metric", "val.top1", "--name", "toy-grid", "--storage", storage,
           "--set", f"sleep={sleep}", "--heartbeat", "1", "--grace", "3", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, cwd=REPO)


def _trials(storage: str) -> list:
    try:
        return optuna.load_study(study_name="toy-grid", storage=storage).get_trials(deepcopy=False)
    except Exception:  # the study or its tables are not created yet
        return []


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a worker and everything it started (papermill, the kernel): a lost machine."""
    for child in _descendants(proc.pid):
        try:
            child.kill()
        except Exception:
            pass
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_two_workers_complete_distinct_trials_and_the_study_survives_a_killed_worker(tmp_path):
    (tmp_path / "toy.ipynb").write_text(json.dumps(TOY))
    storage = f"sqlite:///{tmp_path / 'study.sqlite'}"
    a = _worker(tmp_path, storage, sleep=1.5)
    b = _worker(tmp_path, storage, sleep=1.5)
    start = time.time()
    while not _trials(storage) and time.time() - start < 120:  # read the storage once the workers made it
        time.sleep(0.5)
    deadline, ready = time.time() + 200, False
    while time.time() < deadline and not ready:  # kill worker A while it runs its second trial
        mine = [t for t in _trials(storage) if t.user_attrs.get("worker", "").endswith(f":{a.pid}")]
        ready = any(t.state == optuna.trial.TrialState.COMPLETE for t in mine) and \
            any(t.state == optuna.trial.TrialState.RUNNING for t in mine)
        time.sleep(0.2)
    _kill_tree(a)
    assert ready, a.stdout.read()[-3000:]
    out_b, _ = b.communicate(timeout=240)
    assert b.returncode == 0, out_b[-3000:]
    trials = _trials(storage)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    names = {t.user_attrs["run_name"] for t in complete}
    assert names == {f"T{t}_lam0.1" for t in (1, 2, 3)}  # every grid point, once done
    by_worker = {}
    for t in complete:
        by_worker.setdefault(t.user_attrs["worker"].rsplit(":", 1)[1], set()).add(t.user_attrs["run_name"])
    print("completed trials per worker:", {k: sorted(v) for k, v in by_worker.items()})
    assert set(by_worker) == {str(a.pid), str(b.pid)} and not by_worker[str(a.pid)] & by_worker[str(b.pid)]
    assert all(abs(t.value - t.params["T"] * t.params["lam"]) < 1e-9 for t in complete)
    # Rerunning the command continues the study: nothing is left to train, the stale trial is failed.
    time.sleep(3.5)
    again = _worker(tmp_path, storage, sleep=0.0)
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0 and "3 complete" in out, out[-3000:]
    assert not any(t.state == optuna.trial.TrialState.RUNNING for t in _trials(storage)) or "running" in out


def test_sigterm_to_a_sweep_with_two_workers_stops_the_workers_and_their_notebooks(tmp_path):
    import psutil

    (tmp_path / "toy.ipynb").write_text(json.dumps(TOY))
    storage = f"sqlite:///{tmp_path / 'study.sqlite'}"
    parent = _worker(tmp_path, storage, sleep=120.0, extra=["--workers", "2"])
    deadline = time.time() + 180
    while time.time() < deadline and sum(t.state == optuna.trial.TrialState.RUNNING for t in _trials(storage)) < 2:
        time.sleep(0.5)  # both workers are inside a trial (their notebooks sleep)
    tree = _descendants(parent.pid)  # the workers, their papermill children and kernels
    assert len(tree) >= 4, parent.stdout.read()[-3000:] if parent.poll() is not None else tree
    parent.send_signal(signal.SIGTERM)
    try:
        parent.wait(timeout=60)
    except subprocess.TimeoutExpired:
        parent.kill()
    _, alive = psutil.wait_procs(tree, timeout=30)
    for p in alive:  # leave nothing behind, then fail
        p.kill()
    out = parent.stdout.read()
    assert not alive, f"still running after SIGTERM: {[p.pid for p in alive]}"
    assert parent.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert "2 fail" in out, out[-3000:]  # each worker's interrupted trial is marked failed


def test_specs_name_trials_like_the_notebooks():
    grid = S.grid_spec("nb.ipynb", "part3", "smoke", {"T": [5, 10], "lam": [0.1]}, metric="last.test_top1",
                       storage="sqlite:///x.sqlite")
    assert grid.n_trials == 2 and grid.sampler == "grid"
    assert grid.trial_params(0, {"T": 5, "lam": 0.1}) == ("T5_lam0.1", {"T": 5, "lam": 0.1, "run_name": "T5_lam0.1",
                                                                         "profile": "smoke"})
    search = S.part3_search_spec("smoke", 4, seed=2, storage="sqlite:///x.sqlite")
    assert search.name == "part3_search-smoke-seed2" and search.metric == "val.top1"
    name, params = search.trial_params(3, {"T": 4.5, "lam": 0.2})
    assert name == "r1_03_T4.5_lam0.2" and params["mode"] == "trial" and params["trial_round"] == 1
    assert S.part3_search_spec("smoke", 4, sampler="tpe", storage="sqlite:///x").trial_params(5, {"T": 2, "lam": 1})[0] \
        .startswith("r2_05_")


def test_sweep_command_line_errors_name_the_problem(capsys):
    from kdutils.tools import sweep

    assert sweep.main(["--grid", "T=1,2"]) == 2
    assert "needs the notebook and --part" in capsys.readouterr().err
    assert sweep.main(["missing.ipynb", "--part", "part3", "--grid", "T=1"]) == 2
    assert sweep._worker_argv(["a", "--workers", "3", "--devices=0,1", "--seed", "1"]) == ["a", "--seed", "1"]
    with pytest.raises(ValueError, match="storage must be an SQLAlchemy URL"):
        S.hparam.open_study("x", "results/x.sqlite")
