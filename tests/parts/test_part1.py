"""Part 1 helpers (kdutils.parts.part1): row selection, costs, run-time projection, the ablation
table built from records, and the generated sentences."""
import math

import pandas as pd
import pytest
import torch

from kdutils.core import records as R
from kdutils.core.findings import as_markdown
from kdutils.models import build_model, count_flops, count_params
from kdutils.models.cifar_resnet import ABLATION_PATH, PROPOSAL_PARAM_BUDGET
from kdutils.parts import part1 as A

#: A two-row path of small models, so the tests stay fast.
TINY_PATH = [
    dict(name="ResNet-20", model="resnet20", options={}, change="baseline"),
    dict(name="SE-ResNet-20 (mine)", model="resnet20", options={"attention": "se"}, change="+ SE"),
]
RECIPE = dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, label_smoothing=0.1,
              amp="auto", batch_size=8, epochs=3, budget_s=3600)


def fake_record(last_top1, best_top1=None, status="complete", width=0.25, seconds=120.0):
    best = best_top1 if best_top1 is not None else last_top1
    return {"status": status, "width_mult": width, "n_params": 1_000_000, "epochs_done": 4, "epochs": 4,
            "train_seconds": seconds, "within_budget": status == "complete",
            "best": {"test_top1": best, "test_top5": best + 20}, "last": {"test_top1": last_top1,
                                                                       "test_top5": last_top1 + 20}}


def test_run_names_are_valid_unique_and_carry_the_width():
    names = [A.run_name(e) for e in ABLATION_PATH]
    assert len(set(names)) == len(names)
    for n in names:
        R.check_name(n)
    assert A.run_name(ABLATION_PATH[-1]) == "se-wrn-28-8-proposal"
    assert A.run_name(ABLATION_PATH[0], 0.25) == "resnet-18_w0.25"
    assert A.run_name(ABLATION_PATH[0], 1.0) == "resnet-18"


def test_select_entries_by_any_name_keeps_path_order():
    assert A.select_entries(ABLATION_PATH, "") == ABLATION_PATH
    picked = A.select_entries(ABLATION_PATH, " proposal , ResNet-18,se-wrn-16-8")
    assert [e["name"] for e in picked] == ["ResNet-18", "SE-WRN-16-8", "SE-WRN-28-8 (proposal)"]
    with pytest.raises(ValueError, match="no ablation row called resnet99"):
        A.select_entries(ABLATION_PATH, "resnet18,resnet99")


def test_width_mult_narrows_every_stage():
    """Quick and smoke train narrowed copies of the same architectures."""
    full = build_model("proposal", 100)
    narrow = build_model("proposal", 100, width_mult=0.25)
    assert [s[0].convs[-1].out_channels for s in narrow.stages] == [32, 64, 128]
    assert [s[0].convs[-1].out_channels for s in full.stages] == [128, 256, 512]
    assert len(list(narrow.modules())) == len(list(full.modules()))
    assert count_params(narrow) < count_params(full) / 10


def test_architecture_costs_are_the_full_width_models():
    costs = A.architecture_costs(TINY_PATH)
    model = build_model("resnet20", 100, attention="se")
    assert costs.loc["SE-ResNet-20 (mine)", "params"] == count_params(model)
    assert costs.loc["SE-ResNet-20 (mine)", "flops"] == count_flops(model)
    assert costs.loc["ResNet-20", "params"] < costs.loc["SE-ResNet-20 (mine)", "params"]


def test_projected_seconds_arithmetic():
    # 0.5 s at 32 images -> 2 s at 128; 50,000 // 128 = 390 steps; 100 epochs.
    assert A.projected_seconds(0.5, 32, 128, 50_000, 100) == pytest.approx(2.0 * 390 * 100)
    with pytest.raises(ValueError, match="epochs"):
        A.projected_seconds(0.5, 32, 128, 50_000, 0)


def test_time_train_step_trains_and_projection_flags_the_budget():
    model = build_model("resnet20", 10)
    before = model.fc.weight.detach().clone()
    seconds = A.time_train_step(model, RECIPE, batch_size=2, steps=1, num_classes=10, device="cpu")
    assert 0 < seconds < 30
    assert not torch.equal(before, model.fc.weight.detach())  # it took optimizer steps
    with pytest.raises(ValueError, match="batch_size"):
        A.time_train_step(model, RECIPE, batch_size=0)

    table = A.project_full_runs(TINY_PATH, RECIPE, train_images=80, timing_batch=4, steps=1, warmup=0,
                                device="cpu")
    assert list(table.index) == [e["name"] for e in TINY_PATH]
    row = table.loc["ResNet-20"]
    assert row["projected h"] * 3600 == pytest.approx(row["s/step (timed)"] * 2 * 10 * 3)
    assert row["within budget"]
    tight = A.project_full_runs(TINY_PATH[:1], dict(RECIPE, budget_s=1e-6), 80, 4, steps=1, warmup=0,
                                device="cpu")
    assert not tight.loc["ResNet-20", "within budget"]


def test_architecture_table_from_records():
    costs = pd.DataFrame({"params": [10_000_000, 12_000_000], "flops": [2e9, 3e9]},
                         index=[e["name"] for e in TINY_PATH])
    table = A.architecture_table(TINY_PATH, {"ResNet-20": fake_record(40.0, 42.0)}, costs)
    assert list(table.index) == ["ResNet-20", "SE-ResNet-20 (mine)"]
    assert table.loc["ResNet-20", "params (M)"] == 10.0  # full width, not the record's n_params
    assert table.loc["ResNet-20", "trained params (M)"] == 1.0
    assert table.loc["ResNet-20", "epochs"] == "4/4" and table.loc["ResNet-20", "train min"] == 2.0
    assert table.loc["SE-ResNet-20 (mine)", "status"] == "not run"
    assert math.isnan(table.loc["SE-ResNet-20 (mine)", "Δ last top-1"])

    both = {"ResNet-20": fake_record(40.0, 42.0), "SE-ResNet-20 (mine)": fake_record(45.5)}
    table = A.architecture_table(TINY_PATH, both, costs)
    assert table.loc["SE-ResNet-20 (mine)", "Δ last top-1"] == pytest.approx(5.5)
    assert math.isnan(table.loc["ResNet-20", "Δ last top-1"])


def test_records_of_the_path_are_found_by_run_name():
    rec = R.new_record("part1", A.run_name(TINY_PATH[1], 0.25), "quick")
    R.save_record(rec)
    found = A.path_records(TINY_PATH, "part1", "quick", 0.25)
    assert found["ResNet-20"] is None
    assert found["SE-ResNet-20 (mine)"]["run"] == "se-resnet-20-mine_w0.25"


def summary_for(records, n_test):
    costs = pd.DataFrame({"params": [10_000_000, 12_000_000], "flops": [2e9, 3e9]},
                         index=[e["name"] for e in TINY_PATH])
    return as_markdown(A.ablation_findings(A.architecture_table(TINY_PATH, records, costs), n_test=n_test),
                       caveat="Quick numbers.")


def test_summary_reads_correctly_whatever_the_numbers():
    gain = summary_for({"ResNet-20": fake_record(80.0), "SE-ResNet-20 (mine)": fake_record(83.0)}, 10_000)
    assert gain.startswith("**Quick numbers.**")
    assert "80.00% → 83.00% (+3.00 points, a gain beyond" in gain
    assert "1.20x the parameters and 1.50x the FLOPs" in gain
    assert "largest gain beyond noise came from **SE-ResNet-20 (mine)**" in gain
    assert "largest loss" not in gain and "No single change" not in gain
    assert "above the 82% target" in gain and "under the 30M limit" in gain
    assert "inside the wall-clock budget" in gain

    small = summary_for({"ResNet-20": fake_record(5.0), "SE-ResNet-20 (mine)": fake_record(4.0)}, 1000)
    assert "-1.00 points, inside the" in small
    assert "No single change moved top-1 beyond the noise band." in small
    assert "below the 82% target" in small

    loss = summary_for({"ResNet-20": fake_record(60.0), "SE-ResNet-20 (mine)": fake_record(50.0)}, 10_000)
    assert "-10.00 points, a loss beyond" in loss
    assert "largest loss beyond noise came from **SE-ResNet-20 (mine)** (-10.00 points)" in loss
    assert "largest gain" not in loss and "No single change" not in loss

    stopped = summary_for({"SE-ResNet-20 (mine)": fake_record(50.0, status="budget")}, 1000)
    assert "stopped by the wall-clock budget" in stopped
    assert "No two consecutive rows are both measured" in stopped

    assert "nothing to argue from" in summary_for({}, 1000)


def test_the_proposal_row_is_under_the_budget_at_full_width():
    costs = A.architecture_costs(ABLATION_PATH[-1:])
    assert costs["params"].iloc[0] < PROPOSAL_PARAM_BUDGET


@pytest.mark.notebook
def test_the_notebook_trains_the_same_run_in_two_fresh_processes(tmp_path):
    """Issue 13: models were built before any seed was set, and torch seeds every new process
    differently, so two runs of the notebook started from different weights. Two fresh
    processes (papermill, one row, smoke profile) must now record identical histories."""
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from kdutils.tools.compare_records import compare_roots
    from kdutils.tools.processes import run_notebook

    notebook = Path(__file__).resolve().parents[2] / "notebooks" / "part1_cifar100_architectures.ipynb"
    roots = [tmp_path / "first", tmp_path / "second"]

    def run(root):
        env = {"KD_OUTPUT_ROOT": str(root), "KD_CACHE_DIR": str(root / "cache"), "MPLBACKEND": "Agg",
               "OMP_NUM_THREADS": "1"}
        return run_notebook(notebook, root / "notebooks", "part1", {"profile": "smoke", "models": "resnet-18"},
                            env=env, timeout=600)

    with ThreadPoolExecutor(max_workers=2) as pool:  # each run is its own process
        outcomes = list(pool.map(run, roots))
    assert [o["status"] for o in outcomes] == ["ok", "ok"], [o.get("error") for o in outcomes]
    rows = compare_roots(roots[0], roots[1], "smoke", ["part1"])
    assert rows and all(status == "identical" for _, status, _ in rows), rows
