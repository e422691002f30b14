"""One-page A4 report per assignment part (``make report``), built from the run records
and the figures the notebooks saved.

A part's page holds: the title; a line with profile, device, data and epochs; the part's
key table(s), rendered from the records in ``results/<profile>/<part>/`` (never typed; part
3's page also reads ``part3_search``); the epoch-vs-test-accuracy graph, drawn from the same
records, beside the part's key notebook figures (``figures/part<N>_*.png``); and a short
text: findings and a proposal (or opinion) computed from the first table's numbers, with
the caveat of the profile. Missing records or figures put a "not run yet" note on the page
instead of failing. What a page shows is data: one :class:`PartSpec` per part in
:data:`PARTS`.

Two export paths, one PDF per part, ``reports/<part>_<profile>.pdf``:

- ``latex``: the report notebook ``notebooks/report.ipynb`` is executed by papermill
  (one run per part, outputs in ``runs/<profile>/reports/``), its stream output (warnings,
  progress) removed, and exported with ``jupyter nbconvert --to pdf --no-input`` through an
  A4 template. Needs ``xelatex`` and ``pandoc`` (Debian/Ubuntu: ``apt-get install
  texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc``).
- ``matplotlib``: the same page drawn on one A4 figure and saved as PDF; pure Python, so a
  PDF is always produced.

``--engine auto`` (the default) takes ``latex`` when ``xelatex`` and ``pandoc`` are on the
PATH, else ``matplotlib``, and falls back to ``matplotlib`` when a LaTeX export fails. The
path used is printed and recorded per PDF in ``reports/manifest.json``.

Command line::

    python -m kdutils.tools.report --profile quick                    # every part's PDF
    python -m kdutils.tools.report --profile quick --parts 1,3 --engine matplotlib
    python -m kdutils.tools.report --profile quick --readme           # rewrite README's results block
    python -m kdutils.tools.report --profile quick --readme-tables    # print that Markdown instead
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

from kdutils.core import records as R
from kdutils.core.fileio import atomic_write, atomic_write_text
from kdutils.core.profiles import (
    REPO_ROOT,
    figures_dir,
    reports_dir,
    resolve_profile,
    results_dir,
    runs_dir,
)

ENGINES = ("auto", "latex", "matplotlib")
LATEX_TOOLS = ("xelatex", "pandoc")
LATEX_PACKAGES = "texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc"
REPORT_NOTEBOOK = REPO_ROOT / "notebooks" / "report.ipynb"
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
A4_INCHES = (8.27, 11.69)  # 595 x 842 pt
#: Differences in top-1 below this many points are called ties in the text.
TIE_POINTS = 1.0

#: nbconvert template for the LaTeX path: A4, narrow margins, no title block, no page number.
LATEX_TEMPLATE = r"""((*- extends 'index.tex.j2' -*))
((* block docclass *))\documentclass[10pt,a4paper]{article}((* endblock docclass *))
((* block margins *))\geometry{a4paper,margin=1.4cm}\pagestyle{empty}((* endblock margins *))
((* block maketitle *))((* endblock maketitle *))
"""


# --------------------------------------------------------------------------- what a page shows
@dataclass(frozen=True)
class Column:
    """A table column: its title, the dotted key into a record (``a|b``: the first present,
    see :func:`kdutils.core.records.get_field`) and how values print (``text``, ``pct``,
    ``count``, ``flops``, ``seconds``, ``bytes``, ``num``, ``share``)."""

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

    ``tables``: the key tables (the first one feeds the findings); ``figures``: the
    notebook figures to place beside the curves (``figures/<name>.png``, the first two that
    exist); ``label``: how a row is named in the text, a ``str.format_map`` template over
    the record (e.g. ``"{params[task]}"``; empty or failing: the record's ``label``, else its
    run name); ``metric``: the column that ranks runs; ``baseline``: a regular expression
    for the reference run's name (first match in the first table; with no pattern, the first
    row); ``contenders``: a regular expression for the runs that compete for "best" (empty:
    every row of the first table);
    ``compare``: further columns reported as best-minus-baseline; ``proposal``/``tie``:
    the argued sentence when the best run beats the baseline by more than
    :data:`TIE_POINTS` or not (``str.format`` fields: see :func:`page_stats`); ``sizes``:
    the dotted keys of the number of train and test images (shown in the data line).
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
    compare: tuple = ()
    proposal: str = ""
    tie: str = ""
    sizes: tuple = ("n_train", "n_test")  # record keys of the train / test image counts


PARTS: dict[str, PartSpec] = {s.part: s for s in (
    PartSpec(
        part="part1",
        title="Part 1 - CIFAR-100 architecture ablation",
        notebooks=("part1_cifar100_architectures.ipynb",),
        data="CIFAR-100",
        tables=(Table("Ablation path: one change per row, one fixed recipe", "part1",
                      (LABEL, Column("width", "width_mult", "num"), PARAMS, FLOPS, TOP1, TOP5, LAST_TOP1,
                       EPOCHS, TRAIN_TIME)),),
        baseline=r"^resnet-18(_w[\d.]+)?$",
        proposal=("Adopt {best} as the CIFAR-100 backbone: {gain:+.1f} points top-1 over {baseline} "
                  "for {flops_ratio} its FLOPs. Each row changes one thing, so the steps that pay can "
                  "be read off the table."),
        tie=("No architecture beats {baseline} by more than {tie} point here; keep the simpler "
             "network until a longer run separates them."),
    ),
    PartSpec(
        part="part2",
        title="Part 2 - Knowledge distillation on CIFAR-100",
        notebooks=("part2_cifar100_kd.ipynb",),
        data="CIFAR-100",
        tables=(Table("KD tasks 1-4 and the extra methods (teacher -> trained network)", "part2",
                      (Column("task", "params.task"), Column("method", "params.method"),
                       Column("trained", "params.student"), Column("teacher", "params.teacher"),
                       PARAMS, FLOPS, TOP1, TOP5, EPOCHS, TRAIN_TIME)),),
        figures=("part2_gain",),
        label="{params[task]} {params[method]} ({params[student]})",
        baseline=r"^task1_student_",
        contenders=r"^(task1_student|task2|task3|tfkd_self|tfkd_reg|no_ls|pskd)_",
        proposal=("Train the student with {best}: {gain:+.1f} points top-1 over {baseline}, at the "
                  "same inference cost (same network, only the training signal changes)."),
        tie=("No training signal beats {baseline} by more than {tie} point at this profile; "
             "distillation pays only with a teacher clearly better than the student."),
    ),
    PartSpec(
        part="part3",
        title="Part 3 - CIFAR-10 KD: ResNet18 teacher (8x8x512), small student, T and lambda",
        notebooks=("part3_cifar10_resnet18_kd.ipynb", "part3_hparam_search.ipynb"),
        data="CIFAR-10",
        tables=(
            Table("A/B: teacher and students, L = (1-lambda) CE + lambda T^2 H(p_T, p_S)", "part3",
                  (LABEL, T_COL, LAMBDA_COL, PARAMS, FLOPS, TOP1, TOP5, LAST_TOP1, EPOCHS, TRAIN_TIME),
                  runs=r"^(teacher|student_|KD\d)"),
            Table("C: random log-uniform (T, lambda) search, Hinton form; final students and best trials",
                  "part3_search", (LABEL, T_COL, LAMBDA_COL, TOP1, LAST_TOP1, EPOCHS, TRAIN_TIME),
                  order="metric", max_rows=6),
        ),
        figures=("part3_heatmap", "part3_search_scatter"),
        baseline=r"^student_lam0$",
        contenders=r"^(student_|KD\d)",
        proposal=("Distil the student with {best_settings}: {gain:+.1f} points top-1 over {baseline}, "
                  "the same network trained without the teacher."),
        tie=("The KD settings tried stay within {tie} point of {baseline}; at this profile the "
             "(T, lambda) choice matters less than the teacher's quality."),
    ),
    PartSpec(
        part="part4",
        title="Part 4 - Learning without Forgetting: faces added to the CIFAR-10 network",
        notebooks=("part4_lwf_faces.ipynb",),
        data="CIFAR-10 (old task) + ORL faces (new task)",
        tables=(Table("Old task (CIFAR-10) and new task (faces) after each method", "part4",
                      (LABEL, Column("trainable params", "n_trainable", "count"),
                       Column("old train top-1 %", "final.old_train_top1", "pct"),
                       Column("old test top-1 %", "final.old_test_top1", "pct"),
                       Column("new train top-1 %", "final.new_train_top1", "pct"),
                       Column("new test top-1 %", "final.new_test_top1", "pct"), EPOCHS, TRAIN_TIME),
                      runs=r"^(original|feature_extraction|fine_tuning|lwf_T)"),),
        figures=("part4_old_task",),
        metric=Column("new test top-1 %", "final.new_test_top1", "pct"),
        baseline=r"^fine_tuning",
        contenders=r"^(feature_extraction|fine_tuning|lwf_T)",
        compare=(Column("old test top-1 %", "final.old_test_top1", "pct"),),
        proposal=("Add the faces with {best}: {gain:+.1f} points of new-task top-1 over {baseline}; "
                  "old task: {compared}."),
        tie=("{best} and {baseline} learn the faces equally well (within {tie} point), so the old "
             "task decides: {compared} for {best}."),
        sizes=(),
    ),
    PartSpec(
        part="part5",
        title="Part 5 - Food-11: student <= 100k parameters, KD, compression",
        notebooks=("part5_food11_compression.ipynb",),
        data="food-11 (validation split as the test set)",
        tables=(
            Table("Teachers and students: KD from each teacher, semi-supervised KD", "part5",
                  (LABEL, PARAMS, FLOPS, TOP1, TOP5, EPOCHS, TRAIN_TIME), runs=r"^(teacher_|student)"),
            Table("Compression of the final student: storage formats and iterative pruning", "part5",
                  (LABEL, Column("file size", "size_bytes", "bytes"), Column("zipped", "zipped_bytes", "bytes"),
                   Column("sparsity", "final.sparsity", "share"),
                   Column("val top-1 %", "val_top1|final.val_top1", "pct"), Column("time", "seconds", "seconds")),
                  runs=r"^(quant|prune)-", max_rows=8),
            Table("Plain vs depthwise-separable vs group convolutions at matched parameters", "part5",
                  (LABEL, Column("width", "params.width", "num"), PARAMS, FLOPS, TOP1, EPOCHS, TRAIN_TIME),
                  runs=r"^(conv|dwsep|group)_net$"),
        ),
        figures=("part5_accuracy_vs_size", "part5_pruning"),
        baseline=r"^student$",
        contenders=r"^student",
        proposal=("Submit {best}: {gain:+.1f} points top-1 over {baseline}, the same network under the "
                  "100k-parameter budget trained on the labels alone."),
        tie=("The training signals tried keep {best} within {tie} point of {baseline}; submit the "
             "simplest of the tie."),
        sizes=("params.n_train", "params.n_val"),
    ),
)}


# --------------------------------------------------------------------------- formatting
def format_value(value, kind: str) -> str:
    """A table cell: ``pct`` 71.23 -> "71.2", ``count`` 11_200_000 -> "11.20M", ``flops``
    5.6e8 -> "0.56G", ``seconds`` 95 -> "1.6 min", ``bytes`` 4096 -> "4.0 kB", ``num`` 0.5 ->
    "0.5", ``share`` 0.75 -> "75%"; missing values -> "-"."""
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


def _ratio(a, b) -> str:
    """``a / b`` as ``"19x"``, ``"0.5x"``; ``"1x"`` within 5 %; ``"n/a"`` when unknown."""
    if not a or not b:
        return "n/a"
    return "1x" if abs(a / b - 1) < 0.05 else f"{a / b:.2g}x"


# --------------------------------------------------------------------------- the page
@dataclass
class TableView:
    """A table as shown: display strings, the records of its rows, which row is the best."""

    spec: Table
    frame: object  # pandas DataFrame of display strings
    records: list
    note: str = ""
    best_row: Optional[int] = None


@dataclass
class Page:
    """Everything one part's page shows, computed from records and figure files."""

    spec: PartSpec
    profile: str
    meta: str
    tables: list = field(default_factory=list)
    figures: list = field(default_factory=list)  # paths of the notebook figures placed
    findings: list = field(default_factory=list)
    proposal: str = ""
    proposal_head: str = "Proposal"  # "Opinion" when no run beats the baseline clearly
    caveat: str = ""
    notes: list = field(default_factory=list)

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def records(self) -> list:
        """The records of every table row."""
        return [r for view in self.tables for r in view.records]

    @property
    def sources(self) -> str:
        folders = ", ".join(sorted({f"results/{self.profile}/{t.part}/" for t in self.spec.tables}))
        return f"records: {folders}; notebooks: {', '.join(self.spec.notebooks)}"

    def text_blocks(self) -> list:
        """The text under the figures: (heading, paragraph) pairs that are not empty."""
        blocks = [("Findings", " ".join(self.findings)), (self.proposal_head, self.proposal), ("Caveat", self.caveat)]
        return [(head, body) for head, body in blocks if body]


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
    return pd.DataFrame({c.title: [format_value(v, c.kind) for v in raw[c.title]] for c in keep},
                        columns=[c.title for c in keep])


def _describe_device(records: Sequence[Mapping]) -> str:
    names = []
    for r in records:
        dev = str(r.get("device") or "")
        if dev.startswith("cuda"):
            name = str(r.get("host_device") or "GPU")
        elif dev:
            threads = r.get("cpu_threads")
            name = f"CPU ({threads} thread{'s' if threads != 1 else ''})" if threads else "CPU"
        else:
            continue
        if name not in names:
            names.append(name)
    return ", ".join(names) or "not recorded"


def _describe_data(spec: PartSpec, profile: str, records: Sequence[Mapping]) -> str:
    if profile == "smoke":
        where = "generated images"
    else:
        where = "real sample data" if profile == "quick" else "full data set"
    sizes = [(R.get_field(r, spec.sizes[0]), R.get_field(r, spec.sizes[1]))
             for r in records if spec.sizes and R.get_field(r, spec.sizes[0])]
    if sizes:
        n_train, n_test = max(sizes, key=lambda s: s[0])
        where += f", {n_train} train / {n_test} test images" if n_test else f", {n_train} train images"
    return f"{spec.data}: {where}"


def _span(values) -> str:
    vals = sorted({int(v) for v in values if isinstance(v, (int, float))})
    if not vals:
        return "-"
    return str(vals[0]) if len(vals) == 1 else f"{vals[0]}-{vals[-1]}"


def pick_figures(spec: PartSpec, folder: Optional[Path] = None, limit: int = 2) -> list:
    """The part's notebook figures to place: the first ``limit`` of ``spec.figures`` that exist."""
    folder = Path(folder or figures_dir())
    return [p for p in (folder / f"{name}.png" for name in spec.figures) if p.is_file()][:limit]


def page_stats(rows: Sequence[Mapping], spec: PartSpec) -> Optional[dict]:
    """Numbers the text quotes, from the rows of the first table (None when no row has the
    metric). ``best`` (label; ``best_record`` the record) is the best contender by the
    metric; ``baseline`` the reference run (None when the spec names one that is not in the
    table yet; the first row when it names none); ``same``: the reference is the best;
    ``gain``: best minus reference (points of the metric); ``runner``/``runner_gap``: the
    next-best contender and how far behind it is; ``metric``, ``top1``, ``top5``,
    ``params``, ``flops``, ``time`` of the best; ``flops_ratio``, ``params_ratio`` (best over
    reference); ``best_settings`` (the label with the run's T/lambda-style parameters);
    ``compared`` (the spec's ``compare`` columns, best minus reference); ``tie``."""
    scored = [r for r in rows if _metric(r, spec.metric) is not None]
    if not scored:
        return None
    base = next((r for r in scored if _matches(r, spec.baseline)), None) if spec.baseline else scored[0]
    rivals = [r for r in scored if _matches(r, spec.contenders)] or scored
    best = max(rivals, key=lambda r: _metric(r, spec.metric))
    others = [r for r in rivals if r is not best]
    runner = max(others, key=lambda r: _metric(r, spec.metric)) if others else None
    settings = ", ".join(f"{c.title}={format_value(R.get_field(best, c.key), c.kind)}"
                         for c in spec.tables[0].columns if c.key.startswith("params.")
                         and R.get_field(best, c.key) is not None and f"{c.title}=" not in best["label"])

    def delta(column: Column) -> str:
        a, b = _metric(best, column), _metric(base, column) if base else None
        return f"{column.title} {a - b:+.1f} points" if a is not None and b is not None else f"{column.title} n/a"

    return {
        "best_record": best,
        "best": best["label"],
        "baseline": base["label"] if base else None,
        "same": best is base,
        "gain": _metric(best, spec.metric) - _metric(base, spec.metric) if base else None,
        "runner": runner["label"] if runner else None,
        "runner_gap": _metric(best, spec.metric) - _metric(runner, spec.metric) if runner else None,
        "alternatives": len(others),
        "metric": format_value(_metric(best, spec.metric), spec.metric.kind),
        "top1": format_value(R.get_field(best, "best.test_top1"), "pct"),
        "top5": format_value(R.get_field(best, "best.test_top5"), "pct"),
        "params": format_value(best.get("n_params"), "count"),
        "flops": format_value(best.get("flops"), "flops"),
        "time": format_value(best.get("train_seconds"), "seconds"),
        "flops_ratio": _ratio(best.get("flops"), base.get("flops")) if base else "n/a",
        "params_ratio": _ratio(best.get("n_params"), base.get("n_params")) if base else "n/a",
        "best_settings": f"{best['label']} ({settings})" if settings else best["label"],
        "compared": ", ".join(delta(c) for c in spec.compare),
        "tie": f"{TIE_POINTS:g}",
    }


def _findings(stats: dict, spec: PartSpec) -> list:
    facts = [f"{stats[k]} {what}" for k, what in (("params", "parameters"), ("flops", "FLOPs"))
             if stats[k] != "-"]
    if stats["time"] != "-":
        facts.append(f"trained in {stats['time']}")
    found = [f"Best by {spec.metric.title}: {stats['best']} with {stats['metric']} %"
             + (f" (top-5 {stats['top5']} %)" if spec.metric is TOP1 and stats["top5"] != "-" else "")
             + (f"; {', '.join(facts)}." if facts else ".")]
    if stats["baseline"] is None:
        found.append("The reference run is not in the table yet, so there is no comparison.")
    elif stats["same"]:
        found.append("It is the reference run itself"
                     + (f"; the closest alternative, {stats['runner']}, is {stats['runner_gap']:.1f} points behind."
                        if stats["runner"] else "."))
    else:
        ratios = [f"{'the same' if stats[k] == '1x' else stats[k] + ' the'} {what}"
                  for k, what in (("flops_ratio", "FLOPs"), ("params_ratio", "parameters")) if stats[k] != "n/a"]
        found.append(f"Against {stats['baseline']}: {stats['gain']:+.1f} points"
                     + (f", {stats['compared']}" if stats["compared"] else "")
                     + (f"; {', '.join(ratios)}." if ratios else "."))
    return found


def _argument(stats: dict, spec: PartSpec) -> tuple[str, str]:
    """(heading, text) of the argued sentence: a proposal when the best run beats the
    reference by more than :data:`TIE_POINTS`, else an opinion; empty without a reference
    or without alternatives."""
    if stats["baseline"] is None or stats["runner"] is None:
        return "Proposal", ""
    if stats["same"]:
        close = ", within noise" if stats["runner_gap"] <= TIE_POINTS else ""
        return "Opinion", (f"Keep {stats['baseline']}: none of the {stats['alternatives']} alternative(s) in the "
                           f"table beats it; the closest, {stats['runner']}, is {stats['runner_gap']:.1f} points "
                           f"behind{close}.")
    if stats["gain"] > TIE_POINTS:
        return "Proposal", spec.proposal.format(**stats)
    return "Opinion", spec.tie.format(**stats)


def _caveat(profile: str, epochs: str, device: str) -> str:
    if profile == "smoke":
        return ("Smoke profile: generated images and a single short run per model; the numbers check "
                "the pipeline, not the methods.")
    if profile == "quick":
        return (f"Quick profile: a small real subset and {epochs} epoch(s) on {device}. Gaps of a few "
                "points are within run-to-run noise and the ranking can change in the full run.")
    return ""


def build_page(part, profile: Optional[str] = None, results_root: Optional[Path] = None,
               figures_root: Optional[Path] = None) -> Page:
    """Collect one part's page from ``results/<profile>/...`` and ``figures/``."""
    spec = PARTS[normalize_part(part)]
    profile = resolve_profile(profile)
    loaded: dict = {}
    views = []
    for table in spec.tables:
        if table.part not in loaded:
            loaded[table.part] = R.load_records(table.part, profile, results_root)
        rows, note = select_rows(loaded[table.part], table, spec)
        views.append(TableView(table, build_table(rows, table.columns), rows, note))
    page = Page(spec=spec, profile=profile, meta="", tables=views, figures=pick_figures(spec, figures_root))
    shown = page.records
    data = _describe_data(spec, profile, shown)
    if shown:
        device = _describe_device(shown)
        epochs = _span(r.get("epochs_done", r.get("epochs")) for r in shown)
        last = max(str(r.get("finished", r.get("created", ""))) for r in shown)[:16].replace("T", " ")
        page.meta = (f"profile {profile} | device {device} | data {data} | epochs {epochs} | "
                     f"{len(shown)} run(s), last finished {last}")
        page.caveat = _caveat(profile, epochs, device)
    else:
        page.meta = f"profile {profile} | data {data} | no finished runs yet"
        page.notes.append(f"Not run yet: no finished records for {spec.part} in profile {profile}. "
                          f"Run {' and '.join(spec.notebooks)} (make figures PROFILE={profile}).")
    for view in views:
        if shown and not view.records:
            view.note = f"not run yet in profile {profile}"
    if spec.figures and not page.figures:
        page.notes.append(f"No saved figure yet ({', '.join(n + '.png' for n in spec.figures)}, "
                          f"written by {' and '.join(spec.notebooks)}).")
    stats = page_stats(views[0].records, spec) if views else None
    if stats:
        views[0].best_row = next(i for i, r in enumerate(views[0].records) if r is stats["best_record"])
        page.findings = _findings(stats, spec)
        page.proposal_head, page.proposal = _argument(stats, spec)
    return page


def normalize_part(part) -> str:
    """``1``, ``"1"`` or ``"part1"`` -> ``"part1"`` (ValueError for an unknown part)."""
    name = str(part).strip().lower()
    name = name if name.startswith("part") else f"part{name}"
    if name not in PARTS:
        raise ValueError(f"unknown part {part!r}; choose from {', '.join(PARTS)} (or 1-{len(PARTS)})")
    return name


# --------------------------------------------------------------------------- matplotlib drawing
def _curve_records(page: Page, limit: int = 8) -> list:
    """The first table's rows whose history has test top-1 per epoch (at most ``limit``)."""
    def has_curve(rec):
        return any(h.get("epoch") is not None and h.get("test_top1") is not None for h in rec.get("history") or [])

    rows = page.tables[0].records if page.tables else []
    return [r for r in rows if has_curve(r)][:limit]


def draw_figures(page: Page, fig, rect: Sequence[float]) -> None:
    """The figure row in ``rect`` (left, bottom, width, height in figure fractions): test
    top-1 vs epoch from the records, and the part's notebook figures beside it."""
    import matplotlib.image as mpimg

    from kdutils.core.plots import plot_curves

    left, bottom, width, height = rect
    curves = _curve_records(page)
    panels = (["curves"] if curves else []) + list(page.figures)
    if not panels:
        ax = fig.add_axes(rect)
        ax.axis("off")
        ax.text(0.5, 0.5, "No training curves or saved figures yet.", ha="center", va="center",
                fontsize=9, color="0.4")
        return
    gap = 0.04 * width
    w = (width - gap * (len(panels) - 1)) / len(panels)
    x = left
    for panel in panels:
        if panel == "curves":
            ax = fig.add_axes([x + 0.1 * w, bottom + 0.12 * height, 0.88 * w, 0.8 * height])
            plot_curves(curves, keys=("test_top1",), ylabel="test top-1 (%)", ax=ax,
                        labels=[r["label"] for r in curves])
            ax.set_title("test top-1 vs epoch (from the records)", fontsize=7.5)
            ax.tick_params(labelsize=6.5)
            ax.xaxis.label.set_size(7)
            ax.yaxis.label.set_size(7)
            if ax.get_legend():
                ax.legend(fontsize=5, ncol=2 if len(curves) > 4 and len(panels) == 1 else 1, framealpha=0.6)
        else:
            ax = fig.add_axes([x, bottom, w, height * 0.94])
            ax.imshow(mpimg.imread(panel))
            ax.set_title(f"figures/{panel.name}", fontsize=7.5)
            ax.axis("off")
        x += w + gap


def _wrapped(fig, x: float, y: float, text: str, size: float, width_in: float, **kw) -> float:
    """Draw ``text`` wrapped to ``width_in`` inches from (x, y) down; return the new y."""
    line_h = 1.35 * size / 72 / A4_INCHES[1]
    for line in _wrap(text, size, width_in):
        fig.text(x, y, line, fontsize=size, va="top", **kw)
        y -= line_h
    return y


def _wrap(text: str, size: float, width_in: float) -> list:
    return textwrap.wrap(text, max(20, int(width_in * 72 / (0.53 * size)))) or [""]


def _draw_table(fig, view: TableView, x: float, y: float, width: float, row_h: float) -> float:
    """Draw a table with its top-left corner at (x, y); return the y under it."""
    n = len(view.frame)
    ax = fig.add_axes([x, y - row_h * (n + 1), width, row_h * (n + 1)])
    ax.axis("off")
    table = ax.table(cellText=view.frame.values.tolist(), colLabels=list(view.frame.columns),
                     cellLoc="center", bbox=[0, 0, 1, 1])
    table.auto_set_font_size(False)
    table.set_fontsize(6.5)
    table.auto_set_column_width(list(range(len(view.frame.columns))))
    for (row, _), cell in table.get_celld().items():
        cell.set_linewidth(0.3)
        if row == 0:
            cell.set_facecolor("0.88")
            cell.get_text().set_fontweight("bold")
        elif view.best_row is not None and row - 1 == view.best_row:
            cell.set_facecolor("#e4f1e4")
            cell.get_text().set_fontweight("bold")
    return y - row_h * (n + 1)


def draw_page(page: Page, engine_note: str = "matplotlib"):
    """The page as one A4 matplotlib Figure (not attached to pyplot)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    W, H = A4_INCHES
    fig = Figure(figsize=A4_INCHES)
    m = 0.5 / W  # side margin (figure fraction)
    text_w = W - 1.0
    y = 1 - 0.45 / H
    fig.text(m, y, page.title, fontsize=min(13.0, text_w * 72 / (0.62 * len(page.title))), fontweight="bold",
             va="top")
    y -= 0.3 / H
    y = _wrapped(fig, m, y, page.meta, 7.5, text_w, color="0.3") - 0.05 / H
    fig.add_artist(Line2D([m, 1 - m], [y, y], transform=fig.transFigure, color="0.6", linewidth=0.6))
    y -= 0.1 / H

    for note in page.notes:
        y = _wrapped(fig, m, y, note, 8, text_w, color="#a33") - 0.05 / H
    n_rows = sum(len(v.frame) + 1 for v in page.tables if len(v.frame))
    row_h = min(0.18, 3.9 / max(n_rows, 1)) / H
    for i, view in enumerate(page.tables):
        fig.text(m, y, f"Table {i + 1} - {view.spec.title}", fontsize=8.5, fontweight="bold", va="top")
        y -= 0.19 / H
        if len(view.frame):
            y = _draw_table(fig, view, m, y, 1 - 2 * m, row_h) - 0.04 / H
        under = [f"Rows: {view.note}." if view.note else "",
                 f"Highlighted: the best run by {page.spec.metric.title}." if view.best_row is not None else ""]
        if any(under):
            y = _wrapped(fig, m, y, " ".join(u for u in under if u), 6.5, text_w, style="italic", color="0.3")
        y -= 0.06 / H

    blocks = page.text_blocks()
    text_h = sum(0.2 + 0.04 + 1.35 * 8.5 / 72 * len(_wrap(body, 8.5, text_w)) for _, body in blocks)
    footer = 0.55
    fig_h = min(4.6, max(1.6, y * H - footer - text_h - 0.15))
    draw_figures(page, fig, [m, y - fig_h / H, 1 - 2 * m, fig_h / H])
    y -= fig_h / H + 0.12 / H

    for head, body in blocks:
        fig.text(m, y, head, fontsize=9.5, fontweight="bold", va="top")
        y -= 0.2 / H
        y = _wrapped(fig, m, y, body, 8.5, text_w) - 0.04 / H
    foot = (f"{page.sources} | exported by kdutils.tools.report ({engine_note}) on {time.strftime('%Y-%m-%d %H:%M')}")
    _wrapped(fig, m, 0.42 / H, foot, 6, text_w, color="0.45")
    return fig


def write_pdf_matplotlib(page: Page, path: Path, engine_note: str = "matplotlib") -> Path:
    """Draw the page and save it as a one-page A4 PDF (TrueType fonts, so text is searchable)."""
    import matplotlib

    fig = draw_page(page, engine_note)
    meta = {"Title": page.title, "Subject": page.meta, "Creator": "kdutils.tools.report (matplotlib)"}
    with matplotlib.rc_context({"pdf.fonttype": 42}):
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="pdf", metadata=meta))
    return Path(path)


# --------------------------------------------------------------------------- notebook / Markdown view
def page_markdown(page: Page, links: bool = False, heading: str = "##") -> str:
    """The page's title, meta line and key table as Markdown (README and report notebook);
    ``links`` adds the notebooks with their 'Open in Colab' links."""
    lines = [f"{heading} {page.title}", "", f"*{page.meta}*", ""]
    if links:
        links_md = (f"[{n}](notebooks/{n}) ([Open in Colab]({colab_url(n)}))" for n in page.spec.notebooks)
        lines += [" | ".join(links_md), ""]
    lines += [f"> {note}" for note in page.notes if not note.startswith("No saved figure")]
    for i, view in enumerate(page.tables):
        lines += [f"**Table {i + 1} - {view.spec.title}**", ""]
        if len(view.frame):
            frame = view.frame.copy()
            if view.best_row is not None:  # the best run in bold
                frame.iloc[view.best_row] = [f"**{v}**" for v in frame.iloc[view.best_row]]
            lines += [R.table_markdown(frame.set_index(frame.columns[0]), disable_numparse=True), ""]
        if view.note:
            lines += [f"Rows: {view.note}.", ""]
    return "\n".join(lines).rstrip() + "\n"


def text_markdown(page: Page) -> str:
    """Findings, proposal and caveat as Markdown paragraphs."""
    return "\n\n".join(f"**{head}.** {body}" for head, body in page.text_blocks()) + "\n"


def show_page(page: Page, width: float = 7.3, height: float = 3.0) -> None:
    """Display the page in a notebook: Markdown header and table, the figure row (as a PNG,
    whatever the kernel's matplotlib backend), the text."""
    import io

    from IPython.display import Image, Markdown, display
    from matplotlib.figure import Figure

    display(Markdown(page_markdown(page)))
    fig = Figure(figsize=(width, height))
    draw_figures(page, fig, [0.0, 0.0, 1.0, 1.0])
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=150, bbox_inches="tight")
    display(Image(png.getvalue()))
    display(Markdown(text_markdown(page)))


def repo_slug() -> str:
    """``owner/name`` of the GitHub repository (from ``KD_REPO_URL``, as the set-up cell)."""
    url = os.environ.get("KD_REPO_URL", "https://github.com/kd-course/kd-course.git")
    return url.rstrip("/").removesuffix(".git").split("github.com/")[-1]


def colab_url(notebook: str) -> str:
    return f"https://colab.research.google.com/github/{repo_slug()}/blob/main/notebooks/{notebook}"


def readme_tables(profile: Optional[str] = None, parts: Optional[Sequence[str]] = None) -> str:
    """The README's results block: per part, the key table of the last run with its profile,
    device and data, and links to the notebooks (with Colab links)."""
    profile = resolve_profile(profile)
    chosen = [normalize_part(p) for p in parts] if parts else list(PARTS)
    head = (f"Results of the last `make figures PROFILE={profile}` run, rendered from the records by "
            f"`python -m kdutils.tools.report --profile {profile} --readme` on {time.strftime('%Y-%m-%d')}.")
    if profile != "full":
        head += f" The {profile} profile checks the pipeline; its numbers are not the assignment's results."
    return head + "\n\n" + "\n".join(page_markdown(build_page(p, profile), links=True, heading="###") for p in chosen)


def update_readme(text: str, path: Path = REPO_ROOT / "README.md") -> Path:
    """Replace what lies between the README's results markers with ``text``."""
    content = Path(path).read_text()
    if README_START not in content or README_END not in content:
        raise ValueError(f"{path} has no {README_START} ... {README_END} block to replace")
    before, rest = content.split(README_START, 1)
    _, after = rest.split(README_END, 1)
    return atomic_write_text(path, f"{before}{README_START}\n{text.strip()}\n{README_END}{after}")


# --------------------------------------------------------------------------- export
def latex_available() -> bool:
    return all(shutil.which(tool) for tool in LATEX_TOOLS)


def pdf_pages(path: Path) -> tuple[int, list]:
    """(page count, [width, height] of the first page in points)."""
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    box = reader.pages[0].mediabox
    return len(reader.pages), [round(float(box.width), 1), round(float(box.height), 1)]


def write_pdf_latex(part: str, profile: str, path: Path, timeout: float = 600) -> Path:
    """Execute the report notebook for ``part`` (papermill, as ``make figures`` runs notebooks),
    keep only what its code cells display (no Markdown intro, no stream output such as
    warnings or progress), export it with ``jupyter nbconvert --to pdf --no-input`` through
    the A4 template. Raises RuntimeError when a step fails."""
    import nbformat

    from kdutils.tools.sweep import run_notebook

    outcome = run_notebook(REPORT_NOTEBOOK, runs_dir() / profile / "reports", f"report_{part}",
                           {"profile": profile, "part": part}, timeout=timeout,
                           context={"part": part, "profile": profile})
    if outcome["status"] != "ok":
        raise RuntimeError(f"the report notebook failed for {part}: {outcome['error']} (log: {outcome['log']})")
    nb = nbformat.read(outcome["output"], as_version=4)
    nb.cells = [cell for cell in nb.cells if cell.cell_type == "code"]  # the page is the displayed output
    for cell in nb.cells:
        cell.outputs = [o for o in cell.outputs if o.get("output_type") not in ("stream", "error")]
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"{path.stem}.ipynb"
        nbformat.write(nb, str(src))
        template = Path(tmp) / "a4_report.tex.j2"
        template.write_text(LATEX_TEMPLATE)
        cmd = [sys.executable, "-m", "nbconvert", "--to", "pdf", "--no-input", "--template-file", str(template),
               "--output-dir", tmp, "--output", path.stem, str(src)]
        done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        built = Path(tmp) / f"{path.stem}.pdf"
        if done.returncode != 0 or not built.is_file():
            tail = "\n".join((done.stderr or done.stdout).splitlines()[-15:])
            raise RuntimeError(f"jupyter nbconvert --to pdf failed for {part} (exit {done.returncode}):\n{tail}")
        atomic_write(path, lambda t: shutil.copyfile(built, t))
    return path


def export_reports(profile: Optional[str] = None, parts: Optional[Sequence[str]] = None, engine: str = "auto",
                   out_dir: Optional[Path] = None, log=print) -> list[dict]:
    """Write ``<part>_<profile>.pdf`` per part into ``reports/`` and record each in
    ``reports/manifest.json``; return the manifest entries of this call."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    profile = resolve_profile(profile)
    chosen = [normalize_part(p) for p in parts] if parts else list(PARTS)
    out_dir = Path(out_dir or reports_dir())
    have_latex = latex_available()
    if engine == "latex" and not have_latex:
        missing = [t for t in LATEX_TOOLS if not shutil.which(t)]
        raise RuntimeError(f"--engine latex needs {' and '.join(missing)} on the PATH (Debian/Ubuntu: "
                           f"apt-get install {LATEX_PACKAGES}); or use --engine matplotlib")
    why = ("xelatex and pandoc found" if have_latex else
           "xelatex/pandoc not installed: pure-Python fallback") if engine == "auto" else f"--engine {engine}"
    entries = []
    for part in chosen:
        path = out_dir / f"{part}_{profile}.pdf"
        used, reason = ("latex" if engine == "latex" or (engine == "auto" and have_latex) else "matplotlib"), why
        page = build_page(part, profile)
        if used == "latex":
            try:
                write_pdf_latex(part, profile, path)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                if engine == "latex":
                    raise
                last = [line for line in str(e).splitlines() if line.strip()][-1:] or [type(e).__name__]
                used, reason = "matplotlib", f"LaTeX export failed ({last[0].strip()}): pure-Python fallback"
        if used == "matplotlib":
            write_pdf_matplotlib(page, path, engine_note=f"matplotlib engine: {reason}")
        pages, size = pdf_pages(path)
        entry = {"pdf": str(path.relative_to(out_dir)), "part": part, "profile": profile, "engine": used,
                 "reason": reason, "pages": pages, "page_size_pt": size, "records": len(page.records),
                 "figures": [str(f) for f in page.figures], "notes": page.notes,
                 "results": sorted({str(results_dir() / profile / t.part) for t in page.spec.tables}),
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        entries.append(entry)
        if log:
            warn = "" if pages == 1 else f"  WARNING: {pages} pages, not one"
            log(f"{part}: {path} ({pages} page, {size[0]:.0f}x{size[1]:.0f} pt, {len(page.records)} runs) "
                f"engine={used} ({reason}){warn}")
    manifest_path = out_dir / "manifest.json"
    manifest = {"reports": {}}
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except ValueError:  # a broken manifest is rebuilt
            pass
    manifest.setdefault("reports", {}).update({e["pdf"]: e for e in entries})
    manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    R.atomic_write_json(manifest_path, manifest)
    return entries


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m kdutils.tools.report",
                                 description="One-page A4 PDF report per part from the run records (reports/).")
    ap.add_argument("--profile", default=None, help="smoke | quick | full (default: KD_PROFILE, else quick)")
    ap.add_argument("--parts", default="", help="comma-separated parts, e.g. 1,3 or part1 (default: all)")
    ap.add_argument("--engine", default="auto", choices=ENGINES,
                    help="latex (nbconvert + xelatex), matplotlib (pure Python), auto (latex when installed)")
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--readme", action="store_true", help="rewrite README.md's results block instead of PDFs")
    what.add_argument("--readme-tables", action="store_true", help="print the README results Markdown instead of PDFs")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    parts = [p for p in args.parts.split(",") if p.strip()]
    try:
        if args.readme or args.readme_tables:
            text = readme_tables(args.profile, parts)
            if args.readme_tables:
                print(text)
            else:
                print(f"updated the results block of {update_readme(text)}")
            return 0
        export_reports(args.profile, parts, args.engine)
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
