import json

import pytest

from kdutils.core import records


def test_records_are_atomic_json_and_tabulate(tmp_path):
    rec = records.new_record("partX", "run1", "smoke", {"alpha": 0.5})
    rec.update(status="complete", best={"test_top1": 50.0}, n_params=10)
    path = records.save_record(rec)
    assert path == records.record_path("partX", "run1", "smoke")
    assert json.loads(path.read_text())["params"]["alpha"] == 0.5
    assert not list(path.parent.glob(".*"))  # no temporary files left behind
    rec2 = dict(rec, run="run2", best={"test_top1": 60.0})
    records.save_record(rec2)
    recs = records.load_records("partX", "smoke")
    df = records.records_table(recs, {"run": "run", "alpha": "params.alpha", "top-1": "best.test_top1", "x": "missing.key"})
    assert list(df["top-1"]) == [50.0, 60.0] and df["x"].isna().all()
    assert records.is_finished(recs[0]) and not records.is_finished({"status": "running"})
    with pytest.raises(ValueError, match="file name"):
        records.record_path("partX", "bad/name", "smoke")



def test_run_names_from_parameters():
    from kdutils.core.records import check_name, make_run_name, name_token

    assert make_run_name({"T": 5.0, "lam": 0.1}) == "T5_lam0.1"
    assert make_run_name({"lam": 1e-05, "T": 20, "x": None}, keys=("T", "lam")) == "T20_lam1e-05"
    assert name_token("a b/c") == "a-b-c" and name_token(True) == "True"
    check_name(make_run_name({"T": 2.5, "path": "x/y z"}))  # always a valid file name


@pytest.mark.parametrize("bad", ["..", ".", "...", "", "a/b", "a\\b", "../x", 10, None])
def test_check_name_rejects_dots_separators_empty_and_non_text(bad):
    """Issue 13: ``..`` passed the check, so ``sweep --name ..`` wrote into the output root."""
    from kdutils.core.records import check_name

    with pytest.raises(ValueError, match="only dots|must be text|letters, digits"):
        check_name(bad, "sweep name")
    assert check_name("T5_lam0.1") == "T5_lam0.1" and check_name(".5x") == ".5x"


@pytest.mark.parametrize("content", ['{"part": "partX", "run": "r", "sta', "", "[1, 2]", "\xff\xfe"])
def test_a_damaged_record_names_its_file_and_tables_skip_it(content):
    good = records.new_record("partX", "good", "smoke")
    records.save_record(dict(good, status="complete"))
    bad = records.record_path("partX", "bad", "smoke")
    bad.write_text(content, encoding="latin-1")
    with pytest.raises(records.CorruptRecordError, match=rf"{bad}.*damaged"):
        records.load_record("partX", "bad", "smoke")
    with pytest.warns(UserWarning, match=rf"skipped: results record {bad}"):
        assert [r["run"] for r in records.load_records("partX", "smoke")] == ["good"]


def test_set_aside_renames_and_never_deletes(tmp_path):
    f = tmp_path / "r.json"
    f.write_text("{oops")
    first = records.set_aside(f)
    f.write_text("{again")
    second = records.set_aside(f)
    assert not f.exists() and first != second
    assert first.name.startswith("r.json.corrupt-") and first.read_text() == "{oops" and second.read_text() == "{again"
