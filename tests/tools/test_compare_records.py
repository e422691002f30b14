"""kdutils.tools.compare_records: the regression check of two output roots."""
import json

from kdutils.tools import compare_records as cr


def _write(root, part, run, history, **fields):
    path = root / "results" / "quick" / part / f"{run}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"params": {"lr": 0.1}, "epochs": len(history), "history": history, **fields}))


def test_identical_histories_ignore_timing_and_differences_are_named(tmp_path, capsys):
    before, after = tmp_path / "before", tmp_path / "after"
    row = {"epoch": 1, "train_loss": 2.5, "test_top1": 10.0, "seconds": 3.0}
    _write(before, "part2", "a", [row], amp="off")
    _write(after, "part2", "a", [{**row, "seconds": 9.0}], amp="off")  # only the wall time differs
    _write(before, "part2", "b", [row])
    _write(after, "part2", "b", [{**row, "test_top1": 10.5}])
    _write(before, "part2", "c", [row])
    rows = {name: (status, details) for name, status, details in cr.compare_roots(before, after, "quick", ["part2"])}
    assert rows["part2/a"] == ("identical", [])
    assert rows["part2/b"][0] == "different" and "test_top1 10.0 -> 10.5" in rows["part2/b"][1][0]
    assert rows["part2/c"][0] == "missing"
    assert cr.main([str(before), str(after), "--parts", "part2"]) == 1
    assert "1 identical, 1 different, 1 missing" in capsys.readouterr().out


def test_settings_differences_and_missing_folder(tmp_path):
    before, after = tmp_path / "before", tmp_path / "after"
    _write(before, "part3", "t", [{"epoch": 1}], amp="off")
    _write(after, "part3", "t", [{"epoch": 1}], amp="bfloat16")
    (_, status, details), = cr.compare_roots(before, after, "quick", ["part3"])
    assert status == "different" and details == ["amp: 'off' -> 'bfloat16'"]
    assert cr.main([str(before), str(before), "--parts", "part3"]) == 0
    assert cr.main([str(before), str(after), "--parts", "part9"]) == 1  # no records: a clear message, exit 1
