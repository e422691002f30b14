"""What a part's one-page report shows, declared by the part itself.

Each part module ``kdutils.parts.partN`` ends with ``REPORT = PartSpec(...)``: its tables
(:class:`Table` of :class:`Column`), the notebook figures to place, how rows are labelled
and ranked. This module also applies a spec to records: :func:`select_rows` (which finished
runs a table shows, the seeds of a run folded into one row by :func:`fold_seeds`),
:func:`build_table` (their cells, :func:`format_cell` and :func:`fold_cell`) and
:func:`best_row` (the highlighted run).

Runs repeated over seeds (``<run>``, ``<run>_seed1``, ...; :func:`kdutils.core.seeds.seeded_name`)
are one row: a metric cell shows ``mean ± std`` over the seeds (sample standard deviation,
:func:`kdutils.core.seeds.mean_std`), a ``seeds`` column their number, and rows are ranked and
highlighted on the mean. A run trained with one seed keeps its plain cells.

The report (:mod:`kdutils.tools.report`) builds the page from these and prints the part's
own prose beside the tables, taken from the same module:

- ``findings(records) -> list[str]``: the measured sentences (see
  :mod:`kdutils.core.findings`), the same function the part's notebook displays;
- ``OPINION``: the notebook's argued conclusion (Markdown), the same constant the notebook
  displays.

A part without them gets a page of tables and figures only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from kdutils.core import records as R
from kdutils.core.seeds import base_name, group_by_base, mean_std


#: How a column shows the runs of several seeds in one cell (see :func:`fold_cell`).
FOLDS = ("spread", "mean", "same")


@dataclass(frozen=True)
class Column:
    """A table column: its title, the dotted key into a record (``a|b``: the first present,
    see :func:`kdutils.core.records.get_field`), how values print (``text``, ``pct``,
    ``count``, ``flops``, ``seconds``, ``bytes``, ``num``, ``share``; see :func:`format_cell`)
    and how a row of several seeds shows them (``fold``, one of :data:`FOLDS`: ``spread``
    ``mean ± std``, ``mean`` the mean alone, ``same`` the value the seeds share (a range or
    ``a / b`` when they differ); empty: ``spread`` for ``pct`` columns (the measured
    metrics), ``mean`` for ``seconds``, else ``same``, e.g. parameters and FLOPs)."""

    title: str
    key: str
    kind: str = "text"
    fold: str = ""

    @property
    def folding(self) -> str:
        """The column's :data:`FOLDS` entry: ``fold``, else the default of its ``kind``."""
        if self.fold:
            if self.fold not in FOLDS:
                raise ValueError(f"column {self.title!r}: fold must be one of {', '.join(FOLDS)}, got {self.fold!r}")
            return self.fold
        return {"pct": "spread", "seconds": "mean"}.get(self.kind, "same")


LABEL = Column("run", "label")  # the row's label (see PartSpec.label)
PARAMS = Column("params", "n_params", "count")
FLOPS = Column("FLOPs", "flops", "flops")
TOP1 = Column("best top-1 %", "best.test_top1", "pct")
TOP5 = Column("best top-5 %", "best.test_top5", "pct")
LAST_TOP1 = Column("last top-1 %", "last.test_top1", "pct")
EPOCHS = Column("epochs", "epochs_done", "num")
TRAIN_TIME = Column("train time", "train_seconds", "seconds")
T_COL, LAMBDA_COL = Column("T", "params.T", "num"), Column("lambda", "params.lam", "num")
SEEDS = Column("seeds", "seeds", "num")  # added by build_table when a row folds several seeds


@dataclass(frozen=True)
class Table:
    """One table of a page: the records of ``results/<profile>/<part>/`` whose run name
    matches ``runs`` (a regular expression, ``re.search``; empty: every run), finished ones
    only, in creation order or by the table's metric (``order="metric"``, best first), at
    most ``max_rows`` (then the baseline and the best). ``metric``: the column that ranks
    this table's rows (``order="metric"`` and the cut), e.g. a validation accuracy for a
    search's trials; None: the page's metric. A column whose values are all missing is left
    out."""

    title: str
    part: str
    columns: tuple
    runs: str = ""
    order: str = "created"
    max_rows: int = 12
    metric: Optional[Column] = None


@dataclass(frozen=True)
class PartSpec:
    """What the page of one part shows.

    ``tables``: the key tables (the first one's best row is highlighted and its curves
    drawn); ``figures``: the notebook figures to place beside the curves
    (``figures/<name>.png``, the first two that exist); ``label``: how a row is named, a
    ``str.format_map`` template over the record (e.g. ``"{params[task]}"``; empty or
    failing: the record's ``label``, else its run name); ``metric``: the column that ranks
    runs; ``baseline``: a regular expression for the reference run's name (kept when a
    table is cut to ``max_rows``); ``contenders``: a regular expression for the runs that
    compete for the highlight (empty: every row of the first table); ``opinion_title``:
    the heading of the part's ``OPINION`` on the page; ``sizes``: the dotted keys of the
    number of train and test images (shown in the data line); ``source``: the dotted key of
    the record field that names the data actually used (a folder: its last component is
    shown in the data line, e.g. part 4's face folder), so the page never names a data set
    the run did not use.
    """

    part: str
    title: str
    notebooks: tuple
    data: str
    tables: tuple
    figures: tuple = ()
    label: str = ""
    metric: Column = TOP1
    baseline: str = ""
    contenders: str = ""
    opinion_title: str = "Opinion"
    sizes: tuple = ("n_train", "n_test")  # record keys of the train / test image counts
    source: str = ""  # record key naming the data used (e.g. "params.faces")


def format_cell(value, kind: str) -> str:
    """A table cell as text: ``pct`` 71.23 -> "71.2", ``count`` 11_200_000 -> "11.20M",
    ``flops`` 5.6e8 -> "0.56G", ``seconds`` 95 -> "1.6 min", ``bytes`` 4096 -> "4.0 kB",
    ``num`` 0.5 -> "0.5", ``share`` 0.75 -> "75%", ``text`` as is; missing values -> "-"."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if kind == "text":
        return str(value)
    v = float(value)
    if kind == "pct":
        return f"{v:.1f}"
    if kind == "count":
        return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k" if v >= 1e3 else f"{v:.0f}"
    if kind == "flops":
        return f"{v / 1e9:.2f}G" if v >= 1e8 else f"{v / 1e6:.1f}M"
    if kind == "bytes":
        return f"{v / 2**20:.2f} MB" if v >= 2**20 else f"{v / 1024:.1f} kB"
    if kind == "seconds":
        return f"{v:.0f} s" if v < 60 else f"{v / 60:.1f} min" if v < 3600 else f"{v / 3600:.2f} h"
    if kind == "num":
        return f"{v:g}"
    if kind == "share":
        return f"{100 * v:.0f}%"
    raise ValueError(f"unknown column kind {kind!r}")


def format_spread(std, kind: str) -> str:
    """The ``± std`` part of a folded cell: ``pct`` 1.26 -> "1.3", ``num`` 0.0316 -> "0.032",
    other kinds as :func:`format_cell`."""
    return f"{float(std):.2g}" if kind == "num" else format_cell(std, kind)


# --------------------------------------------------------------------------- the seeds of a run
def _seed_of(rec: Mapping) -> int:
    found = re.search(r"_seed(\d+)$", str(rec.get("run", "")))
    return int(found.group(1)) if found else 0


def seed_runs(row: Mapping) -> list:
    """The records a table row stands for: the runs of its seeds (a row of :func:`fold_seeds`),
    else the row itself."""
    return list(row.get("seed_runs") or [row])


def _mean_history(runs: Sequence[Mapping]) -> list:
    """Per epoch of the first run's history: every number averaged over the runs that have
    that epoch (the curve a folded row draws)."""
    by_epoch = [{h.get("epoch"): h for h in r.get("history") or [] if isinstance(h, Mapping)} for r in runs]
    out = []
    for entry in runs[0].get("history") or []:
        if not isinstance(entry, Mapping):
            continue
        same = [h[entry.get("epoch")] for h in by_epoch if entry.get("epoch") in h]
        mean = {k: mean_std(h.get(k) for h in same)[0] for k, v in entry.items()
                if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)}
        out.append({**entry, **mean})
    return out


def fold_seeds(records: Sequence[Mapping]) -> list:
    """One row per run over its seeds (:func:`kdutils.core.seeds.base_name` groups, in
    first-seen order). A run of one seed stays as it is; a run of several becomes a copy of
    its lowest seed's record named by the base run, with ``seed_runs`` (its records, by seed)
    and a ``history`` averaged over the seeds per epoch (the curve the page draws)."""
    rows = []
    for base, runs in group_by_base(records).items():
        if len(runs) == 1:
            rows.append(runs[0])
            continue
        runs = sorted(runs, key=_seed_of)
        row = {**runs[0], "run": base, "seed_runs": runs}
        if runs[0].get("label") is not None:
            row["label"] = base_name(str(runs[0]["label"]))
        if any(r.get("history") for r in runs):
            row["history"] = _mean_history(runs)
        rows.append(row)
    return rows


def column_values(row: Mapping, column: Column) -> list:
    """The values of ``column`` in the runs of ``row`` (:func:`seed_runs`), one per seed."""
    return [R.get_field(r, column.key) for r in seed_runs(row)]


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def fold_cell(values: Sequence, column: Column) -> str:
    """The cell of ``column`` for the values of a run's seeds: one value as :func:`format_cell`;
    several as the column's :attr:`Column.folding`: ``spread`` ``"45.2 ± 1.3"`` (mean and
    sample standard deviation of the numbers present), ``mean`` ``"45.2"``, ``same`` the
    shared value, a range ``"3-4"`` of differing numbers or ``"a / b"`` of differing texts."""
    if len(values) <= 1:
        return format_cell(values[0] if values else None, column.kind)
    fold = column.folding
    numbers = [float(v) for v in values if _number(v)]
    if fold in ("spread", "mean"):
        mean, std, n = mean_std(numbers)
        if n == 0:
            return "-"
        if fold == "mean" or n == 1:
            return format_cell(mean, column.kind)
        return f"{format_cell(mean, column.kind)} ± {format_spread(std, column.kind)}"
    shown = list(dict.fromkeys(format_cell(v, column.kind) for v in values if v is not None))
    if len(shown) <= 1:
        return shown[0] if shown else "-"
    if len(numbers) == len(values) and column.kind != "text":
        return f"{format_cell(min(numbers), column.kind)}-{format_cell(max(numbers), column.kind)}"
    return " / ".join(shown)


# --------------------------------------------------------------------------- rows of a table
def _labelled(rec: Mapping, spec: PartSpec) -> dict:
    """A copy of ``rec`` with ``label``: the spec's template, else the record's, else the run
    (a folded row's label, on the copies of its seeds' records too)."""
    label = rec.get("label") or rec.get("run")
    if spec.label:
        try:
            label = spec.label.format_map(rec)
        except (KeyError, IndexError, TypeError, ValueError):
            pass
    out = {**rec, "label": label}
    if rec.get("seed_runs"):
        out["seed_runs"] = [{**r, "label": label} for r in rec["seed_runs"]]
    return out


def row_metric(row: Mapping, column: Column) -> Optional[float]:
    """The number that ranks ``row`` by ``column``: its value, for a row of several seeds the
    mean over the seeds that have one (None when none has)."""
    mean, _, n = mean_std(v for v in column_values(row, column) if _number(v))
    return mean if n else None


def _matches(rec: Mapping, pattern: str) -> bool:
    """``pattern`` found in the run's name without its seed suffix (every pattern matches all
    seeds of a run, as the base-named row of :func:`fold_seeds`)."""
    return not pattern or re.search(pattern, base_name(str(rec.get("run", "")))) is not None


def select_rows(records: Sequence[Mapping], table: Table, spec: PartSpec) -> tuple[list, str]:
    """The rows a table shows and a note on what was left out or folded: finished records whose
    run matches ``table.runs``, the seeds of a run folded into one row (:func:`fold_seeds`),
    in the table's order, at most ``max_rows`` (the baseline and the best by the table's
    metric, else the page's, on the mean over seeds)."""
    metric = table.metric or spec.metric
    mine = [r for r in records if _matches(r, table.runs)]
    finished = [r for r in mine if R.is_finished(r)]
    done = [_labelled(row, spec) for row in fold_seeds(finished)]
    notes = []
    skipped = sum(r.get("status") == "skipped" for r in mine)
    if skipped:
        notes.append(f"{skipped} skipped run(s) left out (their notebook says why)")
    if len(finished) + skipped < len(mine):
        notes.append(f"{len(mine) - len(finished) - skipped} unfinished run(s) left out")

    def rank(r):  # best metric first, missing metric last
        m = row_metric(r, metric)
        return -m if m is not None else float("inf")

    if table.order == "metric":
        done.sort(key=rank)
    if len(done) > table.max_rows:
        is_base = (lambda r: _matches(r, spec.baseline)) if spec.baseline else (lambda r: False)
        keep = sorted(done, key=lambda r: (not is_base(r), rank(r)))[: table.max_rows]
        kept = {id(r) for r in keep}
        which = "the baseline and the best" if any(is_base(r) for r in keep) else f"the {table.max_rows} best"
        notes.append(f"{which} of {len(done)} runs by {metric.title}")
        done = [r for r in done if id(r) in kept]
    if any(len(seed_runs(r)) > 1 for r in done):
        notes.append("each run's seeds in one row, mean ± sample std")
    return done, "; ".join(notes)


def build_table(records: Sequence[Mapping], columns: Sequence[Column]):
    """A table as display strings, one row per record or :func:`fold_seeds` row (cells by
    :func:`fold_cell`). A column with no value at all is left out, except the first; when a
    row holds several seeds a ``seeds`` column (:data:`SEEDS`) comes before the first
    ``spread`` column (else last)."""
    import pandas as pd

    values = {c.title: [column_values(r, c) for r in records] for c in columns}
    keep = [c for i, c in enumerate(columns)
            if i == 0 or any(v is not None and v == v for cell in values[c.title] for v in cell)]
    cells = {c.title: [fold_cell(v, c) for v in values[c.title]] for c in keep}
    counts = [len(seed_runs(r)) for r in records]
    if any(n > 1 for n in counts) and SEEDS.title not in cells:
        at = next((i for i, c in enumerate(keep) if i and c.folding == "spread"), len(keep))
        keep.insert(at, SEEDS)
        cells[SEEDS.title] = [str(n) for n in counts]
    return pd.DataFrame(cells, columns=[c.title for c in keep])


def best_row(rows: Sequence[Mapping], spec: PartSpec) -> Optional[int]:
    """The index of the best row by the spec's metric (the mean over a row's seeds) among its
    contenders (all rows when none match), None when no row has the metric."""
    scored = [(i, m) for i, m in ((i, row_metric(r, spec.metric)) for i, r in enumerate(rows)) if m is not None]
    rivals = [(i, m) for i, m in scored if _matches(rows[i], spec.contenders)] or scored
    return max(rivals, key=lambda im: im[1])[0] if rivals else None
