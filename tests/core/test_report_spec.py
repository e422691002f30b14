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
    _, note = S.select_rows(rows + [rec("kd4", None, "skipped")], S.Table("t", "part9", (S.LABEL,)), spec)
    assert note == "1 skipped run(s) left out (their notebook says why); 1 unfinished run(s) left out"
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


# --------------------------------------------------------------------------- runs over seeds (issue 18)
def _seeded(run, seed, top1, status="complete", epochs=3, seconds=60.0, **params):
    """A finished record of ``run`` for ``seed``, named as kdutils.core.seeds.seeded_name names it."""
    name = run if seed == 0 else f"{run}_seed{seed}"
    history = [{"epoch": e + 1, "test_top1": top1 * (e + 1) / epochs} for e in range(epochs)]
    return {"run": name, "status": status, "seed": seed, "params": {"T": params.get("T"), "seed": seed},
            "n_params": 676_300, "flops": 2.1e7, "epochs_done": epochs, "train_seconds": seconds,
            "best": {"test_top1": top1}, "history": history}


SEED_SPEC = S.PartSpec(part="part9", title="t", notebooks=(), data="d", tables=(), baseline=r"^base$",
                       contenders=r"^(base|kd)")
SEED_COLUMNS = (S.LABEL, S.T_COL, S.PARAMS, S.FLOPS, S.TOP1, S.EPOCHS, S.TRAIN_TIME)


def test_fold_cell_by_the_columns_kind():
    top1 = S.Column("top-1", "x", "pct")
    assert top1.folding == "spread" and S.TRAIN_TIME.folding == "mean" and S.PARAMS.folding == "same"
    assert S.fold_cell([40.0, 42.0, 44.0], top1) == "42.0 ± 2.0"  # sample std (ddof=1)
    assert S.fold_cell([40.0, None, 44.0], top1) == "42.0 ± 2.8"  # the seeds that have a value
    assert S.fold_cell([40.0, None], top1) == "40.0" and S.fold_cell([None, None], top1) == "-"
    assert S.fold_cell([41.26], top1) == "41.3" and S.fold_cell([], top1) == "-"  # one seed: as before
    assert S.fold_cell([60, 120], S.TRAIN_TIME) == "1.5 min"
    assert S.fold_cell([676_300] * 3, S.PARAMS) == "676.3k"  # equal over seeds: the runs' value
    assert S.fold_cell([3, 4, 3], S.EPOCHS) == "3-4"  # a run stopped early shows
    assert S.fold_cell(["a", "b", "a"], S.LABEL) == "a / b"
    assert S.fold_cell([0.5, 0.6], S.Column("lr", "x", "num", fold="spread")) == "0.55 ± 0.071"
    with pytest.raises(ValueError, match="fold must be one of"):
        S.Column("x", "x", fold="median").folding


def test_the_seeds_of_a_run_are_one_row_ranked_and_highlighted_on_the_mean():
    records = [_seeded("teacher", 0, 90.0)]
    for seed in (0, 1, 2):
        records += [_seeded("base", seed, (40.0, 42.0, 44.0)[seed]),
                    _seeded("kd_T4", seed, (50.0, 52.0, 60.0)[seed], T=4)]
    records += [_seeded("kd_T8", 0, 55.0, T=8), _seeded("kd_T8", 1, 99.0, status="running", T=8)]
    rows, note = S.select_rows(records, S.Table("t", "part9", SEED_COLUMNS), SEED_SPEC)
    assert [r["run"] for r in rows] == ["teacher", "base", "kd_T4", "kd_T8"]  # first-seen order
    assert [len(S.seed_runs(r)) for r in rows] == [1, 3, 3, 1]
    assert [r["run"] for r in S.seed_runs(rows[2])] == ["kd_T4", "kd_T4_seed1", "kd_T4_seed2"]
    assert note == "1 unfinished run(s) left out; each run's seeds in one row, mean ± sample std"
    frame = S.build_table(rows, SEED_COLUMNS)
    assert list(frame.columns) == ["run", "T", "params", "FLOPs", "seeds", "best top-1 %", "epochs", "train time"]
    assert frame["run"].tolist() == ["teacher", "base", "kd_T4", "kd_T8"]  # labels without _seed<s>
    assert frame["best top-1 %"].tolist() == ["90.0", "42.0 ± 2.0", "54.0 ± 5.3", "55.0"]
    assert frame["seeds"].tolist() == ["1", "3", "3", "1"]
    assert frame["params"].tolist() == ["676.3k"] * 4 and frame["T"].tolist() == ["-", "-", "4", "8"]
    # kd_T4 has the best single run (60), kd_T8 the best mean (55 > 54); the teacher does not compete
    assert S.best_row(rows, SEED_SPEC) == 3
    assert S.row_metric(rows[2], S.TOP1) == pytest.approx(54.0)
    curve = [h["test_top1"] for h in rows[1]["history"]]  # the curve a folded row draws: the mean
    assert curve == pytest.approx([14.0, 28.0, 42.0])

    by_metric = S.Table("t", "part9", SEED_COLUMNS, order="metric", max_rows=3)
    rows, note = S.select_rows(records, by_metric, SEED_SPEC)
    assert [r["run"] for r in rows] == ["teacher", "kd_T8", "base"]  # the baseline kept, ranked on means
    assert "the baseline and the best of 4 runs by best top-1 %" in note


def test_tables_of_single_seed_runs_are_unchanged():
    records = [_seeded("base", 0, 40.0), _seeded("kd_T4", 1, 45.0, T=4)]
    rows, note = S.select_rows(records, S.Table("t", "part9", SEED_COLUMNS), SEED_SPEC)
    assert rows == [{**r, "label": r["run"]} for r in records] and note == ""
    frame = S.build_table(rows, SEED_COLUMNS)
    assert "seeds" not in frame.columns and frame["best top-1 %"].tolist() == ["40.0", "45.0"]
    assert frame["run"].tolist() == ["base", "kd_T4_seed1"]  # a lone seed keeps its name


def test_a_table_can_rank_on_its_own_metric():
    """A search's trials are ranked on validation accuracy, not on the page's test metric."""
    val = S.Column("val top-1 %", "val.top1", "pct")
    trials = [{**_seeded(f"trial{i}", 0, test), "val": {"top1": v}}
              for i, (test, v) in enumerate(((60.0, 30.0), (50.0, 40.0), (55.0, 35.0)))]
    table = S.Table("search", "part9", (S.LABEL, val, S.TOP1), order="metric", max_rows=2, metric=val)
    rows, note = S.select_rows(trials, table, SEED_SPEC)
    assert [r["run"] for r in rows] == ["trial1", "trial2"] and note == "the 2 best of 3 runs by val top-1 %"
    rows, _ = S.select_rows(trials, S.Table("search", "part9", (S.LABEL,), order="metric"), SEED_SPEC)
    assert [r["run"] for r in rows] == ["trial0", "trial2", "trial1"]  # default: the page's metric
