"""What a part's one-page report shows, declared by the part itself.

Each part module ``kdutils.parts.partN`` ends with ``REPORT = PartSpec(...)``: its tables
(:class:`Table` of :class:`Column`), the notebook figures to place, how rows are labelled
and ranked. This module also applies a spec to records: :func:`select_rows` (which finished
runs a table shows), :func:`build_table` (their cells, :func:`format_cell`) and
:func:`best_row` (the highlighted run). The report (:mod:`kdutils.tools.report`) builds the
page from these and prints the part's own prose beside the tables, taken from the same
module:

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


@dataclass(frozen=True)
class Column:
    """A table column: its title, the dotted key into a record (``a|b``: the first present,
    see :func:`kdutils.core.records.get_field`) and how values print (``text``, ``pct``,
    ``count``, ``flops``, ``seconds``, ``bytes``, ``num``, ``share``; see :func:`format_cell`)."""

    title: str
    key: str
    kind: str = "text"


LABEL = Column("run", "label")  # the row's label (see PartSpec.label)
PARAMS = Column("params", "n_params", "count")
FLOPS = Column("FLOPs", "flops", "flops")
TOP1 = Column("best top-1 %", "best.test_top1", "pct")
TOP5 = Column("best top-5 %", "best.test_top5", "pct")
LAST_TOP1 = Column("last top-1 %", "last.test_top1", "pct")
EPOCHS = Column("epochs", "epochs_done", "num")
TRAIN_TIME = Column("train time", "train_seconds", "seconds")
T_COL, LAMBDA_COL = Column("T", "params.T", "num"), Column("lambda", "params.lam", "num")


@dataclass(frozen=True)
class Table:
    """One table of a page: the records of ``results/<profile>/<part>/`` whose run name
    matches ``runs`` (a regular expression, ``re.search``; empty: every run), finished ones
    only, in creation order or by the page's metric (``order="metric"``, best first), at
    most ``max_rows`` (then the baseline and the best). A column whose values are all
    missing is left out."""

    title: str
    part: str
    columns: tuple
    runs: str = ""
    order: str = "created"
    max_rows: int = 12


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


# --------------------------------------------------------------------------- rows of a table
def _labelled(rec: Mapping, spec: PartSpec) -> dict:
    """A copy of ``rec`` with ``label``: the spec's template, else the record's, else the run."""
    label = rec.get("label") or rec.get("run")
    if spec.label:
        try:
            label = spec.label.format_map(rec)
        except (KeyError, IndexError, TypeError, ValueError):
            pass
    return {**rec, "label": label}


def _metric(rec: Mapping, column: Column) -> Optional[float]:
    v = R.get_field(rec, column.key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _matches(rec: Mapping, pattern: str) -> bool:
    return not pattern or re.search(pattern, str(rec.get("run", ""))) is not None


def select_rows(records: Sequence[Mapping], table: Table, spec: PartSpec) -> tuple[list, str]:
    """The records a table shows and a note when some are left out: finished records whose
    run matches ``table.runs``, in the table's order, at most ``max_rows`` (the baseline and
    the best by the page's metric)."""
    mine = [r for r in records if _matches(r, table.runs)]
    done = [_labelled(r, spec) for r in mine if R.is_finished(r)]
    notes = []
    if len(done) < len(mine):
        notes.append(f"{len(mine) - len(done)} unfinished run(s) left out")

    def rank(r):  # best metric first, missing metric last
        m = _metric(r, spec.metric)
        return -m if m is not None else float("inf")

    if table.order == "metric":
        done.sort(key=rank)
    if len(done) > table.max_rows:
        is_base = (lambda r: _matches(r, spec.baseline)) if spec.baseline else (lambda r: False)
        keep = sorted(done, key=lambda r: (not is_base(r), rank(r)))[: table.max_rows]
        kept = {id(r) for r in keep}
        which = "the baseline and the best" if any(is_base(r) for r in keep) else f"the {table.max_rows} best"
        notes.append(f"{which} of {len(done)} runs by {spec.metric.title}")
        done = [r for r in done if id(r) in kept]
    return done, "; ".join(notes)


def build_table(records: Sequence[Mapping], columns: Sequence[Column]):
    """A table as display strings (a column with no value at all is left out, except the first)."""
    import pandas as pd

    raw = R.records_table(records, {c.title: c.key for c in columns})
    keep = [c for i, c in enumerate(columns) if i == 0 or raw[c.title].notna().any()]
    return pd.DataFrame({c.title: [format_cell(v, c.kind) for v in raw[c.title]] for c in keep},
                        columns=[c.title for c in keep])


def best_row(rows: Sequence[Mapping], spec: PartSpec) -> Optional[int]:
    """The index of the best row by the spec's metric among its contenders (all rows when
    none match), None when no row has the metric."""
    scored = [(i, _metric(r, spec.metric)) for i, r in enumerate(rows) if _metric(r, spec.metric) is not None]
    rivals = [(i, m) for i, m in scored if _matches(rows[i], spec.contenders)] or scored
    return max(rivals, key=lambda im: im[1])[0] if rivals else None
