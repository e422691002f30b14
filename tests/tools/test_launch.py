"""``kdutils.tools.launch``: a notebook's run trained by torchrun on 2 gloo processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdutils.tools import launch as L

REPO = Path(__file__).resolve().parents[2]


def _env(root: Path) -> dict:
    env = dict(os.environ, KD_OUTPUT_ROOT=str(root), KD_CACHE_DIR=str(root / "cache"), KD_HEADLESS="1",
               OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("WORLD_SIZE", None)
    return env


def test_part3_student_on_two_processes_matches_the_notebooks_single_process_run(tmp_path, monkeypatch):
    args = ["kdutils.tools.launch", "part3", "student_lam0", "--profile", "smoke", "-p", "student_epochs=2"]
    one = subprocess.run([sys.executable, "-m", *args], env=_env(tmp_path / "one"), capture_output=True, text=True,
                         timeout=240, cwd=REPO)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", *args], env=_env(tmp_path / "two"), capture_output=True, text=True, timeout=240,
                         cwd=REPO)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("part3/student_lam0 (smoke): complete") == 1  # rank 0 reports
    records = {k: list((tmp_path / k / "results" / "smoke" / "part3").glob("*.json")) for k in ("one", "two")}
    assert [p.name for p in records["two"]] == ["student_lam0.json"]  # one record, the notebook's name
    single, double = (json.loads(records[k][0].read_text()) for k in ("one", "two"))
    assert (tmp_path / "two" / "runs" / "checkpoints" / "smoke" / "part3" / "student_lam0.pt").exists()
    assert double["distributed"]["world_size"] == 2 and double["epochs_done"] == 2
    assert double["params"] == single["params"] and double["recipe"] == single["recipe"]
    for a, b in zip(single["history"], double["history"]):  # no BatchNorm: the same global batch, the same steps
        assert abs(a["train_loss"] - b["train_loss"]) <= 1e-4 and a["test_top1"] == b["test_top1"]


def _notebook_cells(notebook: str, markers, **parameters) -> dict:
    """Run a notebook's own code in this process, as papermill would: its parameters cell with
    ``parameters``, the set-up cell after it, then the code cells holding each of ``markers``."""
    from tests.helpers import run_resolve_cell

    ns = run_resolve_cell(notebook, **parameters)
    cells = json.loads((REPO / "notebooks" / notebook).read_text())["cells"]
    for marker in markers:
        exec(next("".join(c["source"]) for c in cells if c["cell_type"] == "code" and marker in "".join(c["source"])), ns)
    return ns


def _outputs(part: str) -> dict:
    root = Path(os.environ["KD_OUTPUT_ROOT"])
    return {p.stem: json.loads(p.read_text()) for p in (root / "results" / "smoke" / part).glob("*.json")}


def _checkpoints(part: str) -> list:
    return sorted(p.stem for p in (Path(os.environ["KD_OUTPUT_ROOT"]) / "runs" / "checkpoints" / "smoke" / part).glob("*.pt"))


def test_part1_row_launched_in_one_process_is_the_notebooks_finished_run(capsys):
    assert L.main(["part1", "resnet-18", "--profile", "smoke"]) == 0
    launched = _outputs("part1")
    assert list(launched) == ["resnet-18_w0.125"] == _checkpoints("part1")  # the notebook's name at smoke width
    capsys.readouterr()
    _notebook_cells("part1_cifar100_architectures.ipynb", ["cifar_loaders(", "train_entry("], profile="smoke",
                    models="resnet-18")
    assert "[part1/resnet-18_w0.125] finished before" in capsys.readouterr().out  # same settings and data
    assert _outputs("part1") == launched  # the notebook reused it, trained nothing


def test_part2_teacher_in_one_process_and_kd_student_on_two_processes_are_the_notebooks_runs(capsys):
    """The task-1 teacher by launch in this process; task 2 (KD from it: the teacher runs on
    both ranks) by torchrun on 2 gloo processes; the notebook then reuses both. (The networks
    have BatchNorm, whose statistics are per process: agreement with one process, to 1e-4,
    is measured on a network without it, above and in tests/core/test_distributed.py.)"""
    assert L.main(["part2", "task1_teacher", "--profile", "smoke"]) == 0
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "kdutils.tools.launch", "part2", "task2", "--profile", "smoke"],
                         env=_env(Path(os.environ["KD_OUTPUT_ROOT"])), capture_output=True, text=True, timeout=300,
                         cwd=REPO)
    assert two.returncode == 0, two.stderr[-3000:]
    student = "task2_wrn_40_2x0.25-to-wrn_16_2x0.25_a0.9_t4"
    assert two.stdout.count(f"part2/{student} (smoke): complete") == 1  # rank 0 reports
    launched = _outputs("part2")
    assert sorted(launched) == ["task1_teacher_wrn_40_2x0.25", student] == _checkpoints("part2")
    assert launched[student]["distributed"]["world_size"] == 2 and "distributed" not in launched["task1_teacher_wrn_40_2x0.25"]
    capsys.readouterr()
    ns = _notebook_cells("part2_cifar100_kd.ipynb", ["def train(key)"], profile="smoke")
    ns["train"]("task1_teacher"), ns["train"]("task2")
    out = capsys.readouterr().out
    assert f"[part2/{student}] finished before" in out and "[part2/task1_teacher_wrn_40_2x0.25] finished before" in out
    assert _outputs("part2") == launched


def test_unknown_runs_parameters_and_parts_are_named(monkeypatch, capsys):
    with pytest.raises(ValueError, match="part3 has no run 'nope'.*student_lam0"):
        L._part3_student("nope", {}, [{"run": "student_lam0"}])
    assert L._part3_student("T5_lam0.3", {"T": 5.0, "lam": 0.3}, [])["lam"] == 0.3
    with pytest.raises(ValueError, match="no notebook parameter colour"):
        L.launch("part3", "teacher", "smoke", {"colour": 1})
    with pytest.raises(ValueError, match="no launchable runs for 'part9'"):
        L.launch("part9", "x")
    assert L.main(["part3", "--list"]) == 0
    assert L.main(["part3"]) == 2
    with pytest.raises(ValueError, match="part1 has no run 'vgg'.*resnet-18_w0.125"):
        L.launch("part1", "vgg", "smoke")
    with pytest.raises(ValueError, match="epochs = 0"):  # the notebook's own rules
        L.launch("part1", "resnet-18", "smoke", {"epochs": 0})
    with pytest.raises(ValueError, match="part2 has no run 'task9'.*task2, task3"):
        L.launch("part2", "task9", "smoke")
    monkeypatch.setattr(L.D, "world_size", lambda: 2)
    with pytest.raises(ValueError, match="PS-KD reads each image's prediction.*one process"):
        L.launch("part2", "pskd", "smoke")
    assert L.main(["part1", "--list", "--profile", "smoke"]) == 0 and L.main(["part2", "--list", "--profile", "smoke"]) == 0
    listed = capsys.readouterr().out
    assert "resnet-18_w0.125, cbam-resnet-18_w0.125" in listed and "task2_seed" not in listed
    assert "  task2 = task2_wrn_40_2x0.25-to-wrn_16_2x0.25_a0.9_t4\n" in listed and "pskd_wrn_16_2x0.25_a0.8  [one process" in listed
    with pytest.raises(ValueError, match="part5 has no training run 'quant-student'.*teacher_scratch.*not training runs"):
        L.launch("part5", "quant-student", "smoke")
    with pytest.raises(ValueError, match="no notebook parameter prune_rates"):
        L.launch("part5", "student", "smoke", {"prune_rates": [0.2, 0.4]})
    assert L.main(["part5", "--list"]) == 0 and "group_net (a student needs" in capsys.readouterr().out


def test_part5_training_runs_launched_in_one_process_are_the_notebooks_finished_runs(capsys):
    """Every training run of part 5, by launch in this process (a student before its teacher is
    refused, naming the teacher); then the notebook's training cells reuse all of them."""
    from kdutils.parts import part5

    with pytest.raises(FileNotFoundError, match="teacher_scratch .*has not finished.*launch part5 teacher_scratch"):
        L.launch("part5", "student_kd_scratch", "smoke")
    for run in part5.TRAINING_RUNS:
        assert L.main(["part5", run, "--profile", "smoke"]) == 0, run
    launched = _outputs("part5")
    assert sorted(launched) == sorted(part5.TRAINING_RUNS)  # the notebook's record names
    trained = sorted(r for r, rec in launched.items() if rec["status"] == "complete")
    assert trained == _checkpoints("part5") and "student_kd_semi" in trained
    assert launched["teacher_pretrained"]["status"] == "skipped"  # as the notebook: smoke downloads nothing
    capsys.readouterr()
    _notebook_cells("part5_food11_compression.ipynb", ["F.study_for(", "check_param_budget(", "F.train_teachers(",
                                                       "F.train_students(", "F.train_semi_supervised(",
                                                       "F.train_comparison("], profile="smoke")
    out = capsys.readouterr().out
    assert all(f"[part5/{run}] finished before" in out for run in trained), out[-3000:]
    again = _outputs("part5")
    assert {r: again[r] for r in trained} == {r: launched[r] for r in trained}  # reused, nothing retrained
    assert again["student_kd_pretrained"]["status"] == "skipped"


def test_part4_method_runs_launched_in_one_process_are_the_notebooks_finished_runs(capsys):
    """Part 4's three method runs (LwF with its warm-up) by launch in this process, after part 3's
    teacher (the original network); the notebook's cells then reuse every one of them."""
    with pytest.raises(FileNotFoundError, match="launch part3 teacher"):
        L.launch("part4", "feature_extraction", "smoke")
    assert L.main(["part3", "teacher", "--profile", "smoke"]) == 0
    runs = ["feature_extraction", "fine_tuning_layer3+layer4_lr10pct", "lwf_T2_lambda01_lr10pct"]
    for run in runs:
        assert L.main(["part4", run, "--profile", "smoke"]) == 0, run
    launched = _outputs("part4")
    trained = sorted(runs + ["lwf_warmup_1ep"])  # the notebook's names (seed 0: no suffix)
    assert sorted(launched) == trained == _checkpoints("part4")
    assert all("final" in launched[r] for r in runs)  # both tasks measured after adaptation, as the notebook's
    capsys.readouterr()
    _notebook_cells("part4_lwf_faces.ipynb", ["load_faces(", "teacher_for_students(", "part4.Adaptation(",
                                              'adaptation.train("fine_tuning"', 'adaptation.train("lwf"'],
                    profile="smoke")
    out = capsys.readouterr().out
    assert all(f"[part4/{run}] finished before" in out for run in trained), out[-3000:]
    again = _outputs("part4")
    assert {r: again[r] for r in trained} == launched and again["original"]["status"] == "complete"
    with pytest.raises(ValueError, match="part4 has no run 'lwf'.*feature_extraction, fine_tuning_layer3"):
        L.launch("part4", "lwf", "smoke")
