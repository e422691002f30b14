"""The page declarations of the report (kdutils.core.report_spec): cell formatting, and every
part's own REPORT spec."""
import importlib

import pytest

from kdutils.core import report_spec as S

KINDS = ("text", "pct", "count", "flops", "seconds", "bytes", "num", "share")


def test_columns_without_values_are_left_out():
    frame = S.build_table([{"label": "a", "x": None}, {"label": "b"}], [S.LABEL, S.Column("x", "x", "pct")])
    assert list(frame.columns) == ["run"] and frame["run"].tolist() == ["a", "b"]


def test_rows_are_finished_runs_labelled_by_the_spec_and_the_best_contender_is_highlighted():
    spec = S.PartSpec(part="part9", title="t", notebooks=(), data="d", tables=(), label="{params[k]}",
                      baseline=r"^base$", contenders=r"^(base|kd)")

    def rec(run, top1, status="complete"):
        return {"run": run, "status": status, "params": {"k": run.upper()}, "best": {"test_top1": top1}}

    rows = [rec("teacher", 90.0), rec("base", 50.0), rec("kd1", 55.0), rec("kd2", 52.0), rec("kd3", 1.0, "running")]
    shown, note = S.select_rows(rows, S.Table("t", "part9", (S.LABEL,), max_rows=3), spec)
    assert [r["label"] for r in shown] == ["TEACHER", "BASE", "KD1"]  # the baseline kept, then the best
    assert note == "1 unfinished run(s) left out; the baseline and the best of 4 runs by best top-1 %"
    assert S.best_row(shown, spec) == 2  # the teacher does not compete
    assert S.best_row([rec("x", None)], spec) is None


def test_format_cell():
    assert S.format_cell(71.234, "pct") == "71.2"
    assert S.format_cell(95_300, "count") == "95.3k"
    assert S.format_cell(11_200_000, "count") == "11.20M"
    assert S.format_cell(5.6e8, "flops") == "0.56G"
    assert S.format_cell(3.1e7, "flops") == "31.0M"
    assert S.format_cell(95, "seconds") == "1.6 min"
    assert S.format_cell(4096, "bytes") == "4.0 kB"
    assert S.format_cell(0.75, "share") == "75%"
    assert S.format_cell(0.5, "num") == "0.5"
    assert S.format_cell("KD", "text") == "KD"
    assert S.format_cell(None, "pct") == "-" and S.format_cell(float("nan"), "count") == "-"
    with pytest.raises(ValueError, match="kind"):
        S.format_cell(1, "furlongs")


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_each_part_declares_its_page(n):
    spec = importlib.import_module(f"kdutils.parts.part{n}").REPORT
    assert isinstance(spec, S.PartSpec) and spec.part == f"part{n}"
    assert spec.tables and all(isinstance(t, S.Table) for t in spec.tables)
    assert all(t.part.startswith(spec.part) for t in spec.tables)
    columns = [c for t in spec.tables for c in t.columns] + [spec.metric]
    assert all(isinstance(c, S.Column) and c.kind in KINDS for c in columns)
    assert all(nb.startswith(f"part{n}_") and nb.endswith(".ipynb") for nb in spec.notebooks)
