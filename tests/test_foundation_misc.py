import json

import pytest
import torch
from torch import nn

from kdutils import models, profiles, results


def test_profile_resolution(monkeypatch):
    monkeypatch.delenv("KD_PROFILE", raising=False)
    assert profiles.resolve_profile() == "quick"
    monkeypatch.setenv("KD_PROFILE", "smoke")
    assert profiles.resolve_profile() == "smoke"
    assert profiles.resolve_profile("full") == "full"  # the parameter wins
    with pytest.raises(ValueError, match="smoke, quick, full"):
        profiles.resolve_profile("fast")


def test_resolve_settings_and_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("KD_PROFILE", "smoke")
    monkeypatch.delenv("KD_DATA_ROOT", raising=False)
    s = profiles.resolve(settings={"smoke": {"epochs": 1}, "quick": {"epochs": 5}}, overrides={"epochs": None})
    assert s.profile == "smoke" and s["epochs"] == 1 and s.data_root is None
    monkeypatch.setenv("KD_DATA_ROOT", str(tmp_path))
    s = profiles.resolve("quick", settings={"quick": {"epochs": 5}}, overrides={"epochs": 2})
    assert s.data_root == tmp_path and s["epochs"] == 2


def test_records_are_atomic_json_and_tabulate(tmp_path):
    rec = results.new_record("partX", "run1", "smoke", {"alpha": 0.5})
    rec.update(status="complete", best={"test_top1": 50.0}, n_params=10)
    path = results.save_record(rec)
    assert path == results.record_path("partX", "run1", "smoke")
    assert json.loads(path.read_text())["params"]["alpha"] == 0.5
    assert not list(path.parent.glob(".*"))  # no temporary files left behind
    rec2 = dict(rec, run="run2", best={"test_top1": 60.0})
    results.save_record(rec2)
    recs = results.load_records("partX", "smoke")
    df = results.records_table(recs, {"run": "run", "alpha": "params.alpha", "top-1": "best.test_top1", "x": "missing.key"})
    assert list(df["top-1"]) == [50.0, 60.0] and df["x"].isna().all()
    assert results.is_finished(recs[0]) and not results.is_finished({"status": "running"})
    with pytest.raises(ValueError, match="file name"):
        results.record_path("partX", "bad/name", "smoke")


def test_registry_unknown_name_lists_known():
    with pytest.raises(ValueError) as e:
        models.build_model("no_such_net", 10)
    assert "known models" in str(e.value)


def test_count_params_and_flops_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    assert models.count_params(net) == 3 * 4 * 9 + 2 * 4 + 144 * 5 + 5
    net[0].weight.requires_grad_(False)
    assert models.count_params(net) == 3 * 4 * 9 + 8 + 725  # frozen parameters still count
    assert models.count_params(net, trainable_only=True) == 8 + 725
    lin = nn.Linear(10, 7)
    assert models.count_flops(lin, (1, 10)) == 2 * 10 * 7
    assert models.count_macs(lin, (1, 10)) == 70
    with pytest.raises(ValueError, match="over the budget"):
        models.check_param_budget(lin, 50)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    from kdutils.fileio import atomic_write, atomic_write_text

    target = atomic_write_text(tmp_path / "f.txt", "old")

    def broken(tmp):
        open(tmp, "w").write("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temporary file left


def test_atomic_files_get_ordinary_permissions(tmp_path):
    import os

    from kdutils.fileio import atomic_write_text

    mask = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(mask)
    assert oct(p.stat().st_mode & 0o777) == oct(0o644)
