"""One-page A4 report per assignment part (``make report``), built from the run records,
the figures the notebooks saved and the parts' own text.

A part's page holds the title; one line with what a reader needs to trust it (profile,
device, data actually used, epochs, seeds, number of runs and, outside the full profile,
"<profile> profile: not the assignment's result"); the part's key table(s), rendered from
the records in ``results/<profile>/<part>/`` (never typed; the runs of a run's seeds are one
row, its metrics ``mean ± std`` with a ``seeds`` column and ranked on the mean, see
:mod:`kdutils.core.report_spec`); the set-up table (the recipes
the runs trained with, from the same records); the epoch-vs-test-accuracy graph from the
records beside the part's notebook figures (``figures/part<N>_*.png``); then the part's
findings (``partN.findings(records)``, numbers from the records) and argued opinion
(``partN.OPINION``), the very text its notebook's conclusion cell displays (that cell is
tagged ``report`` in the notebook: what it shows is what the page prints), and the
profile's caveat. Missing records or figures put a "not run yet" note on the page instead
of failing.

What a page shows is declared by the part, ``kdutils.parts.partN.REPORT`` (a
:class:`~kdutils.core.report_spec.PartSpec`); every module ``partN`` of :mod:`kdutils.parts`
has a page. :func:`kdutils.tools.pdf.write_pdf` writes ``reports/<part>_<profile>.pdf``
(LaTeX through ``notebooks/report.ipynb`` where xelatex and pandoc exist, else or on failure
matplotlib); the engine used is printed and kept in ``reports/manifest.json``.

Command line::

    python -m kdutils.tools.report --profile quick                    # every part's PDF
    python -m kdutils.tools.report --profile quick --parts 1,3 --engine matplotlib
    python -m kdutils.tools.report --profile quick --readme           # rewrite README's results block
    python -m kdutils.tools.report --profile quick --readme-tables    # print that Markdown instead
    python -m kdutils.tools.report --profile quick --readme-figures   # copy key figures to docs/figures/
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

import kdutils.parts
from kdutils.core import records as R
from kdutils.core.fileio import atomic_write, atomic_write_text
from kdutils.core.findings import as_markdown
from kdutils.core.profiles import REPO_ROOT, figures_dir, reports_dir, resolve_profile, results_dir
from kdutils.core.report_spec import PartSpec, Table, best_row, build_table, seed_runs, select_rows
from kdutils.tools import pdf

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
FIGURES_START, FIGURES_END = "<!-- figures:start -->", "<!-- figures:end -->"
#: The figures the README shows (one per part, where people would rather look than read).
README_FIGURES = ("part1_test_top1", "part2_gain", "part3_heatmap", "part4_old_task", "part5_accuracy_vs_size")
README_FIGURE_WIDTH_PX = 640
#: The parts with a page: the modules ``partN`` of :mod:`kdutils.parts`, in number order.
PARTS = tuple(sorted((m.name for m in pkgutil.iter_modules(kdutils.parts.__path__)
                      if re.fullmatch(r"part\d+", m.name)), key=lambda name: int(name[4:])))


def normalize_part(part) -> str:
    """``1``, ``"1"`` or ``"part1"`` -> ``"part1"`` (ValueError for an unknown part)."""
    name = str(part).strip().lower()
    name = name if name.startswith("part") else f"part{name}"
    if name not in PARTS:
        raise ValueError(f"unknown part {part!r}; choose from {', '.join(PARTS)} (or 1-{len(PARTS)})")
    return name


def part_module(part):
    """The module ``kdutils.parts.<part>``: its ``REPORT``, ``findings`` and ``OPINION``."""
    return importlib.import_module(f"kdutils.parts.{normalize_part(part)}")


def spec_of(part) -> PartSpec:
    return part_module(part).REPORT


# --------------------------------------------------------------------------- the page
@dataclass
class TableView:
    """A table as shown: display strings, its rows (records; a run of several seeds is one
    row, :func:`kdutils.core.report_spec.fold_seeds`), which row is the best."""

    spec: Table
    frame: object  # pandas DataFrame of display strings
    records: list
    note: str = ""
    best_row: Optional[int] = None


@dataclass
class Page:
    """Everything one part's page shows, computed from records, figure files and the part."""

    spec: PartSpec
    profile: str
    meta: str
    tables: list = field(default_factory=list)
    figures: list = field(default_factory=list)  # paths of the notebook figures placed
    findings: list = field(default_factory=list)  # the part's findings(records)
    opinion: str = ""  # the part's OPINION (Markdown)
    caveat: str = ""
    notes: list = field(default_factory=list)
    setup: object = None  # pandas DataFrame: the recipes the runs trained with (see setup_table)

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def records(self) -> list:
        """The records of every table row (every seed of a folded row)."""
        return [r for view in self.tables for row in view.records for r in seed_runs(row)]

    @property
    def sources(self) -> str:
        folders = ", ".join(sorted({f"results/{self.profile}/{t.part}/" for t in self.spec.tables}))
        return f"records: {folders}; notebooks: {', '.join(self.spec.notebooks)}"

    def text_blocks(self) -> list:
        """The text under the figures, ``(heading, body)`` pairs that are not empty: the
        findings (a list of sentences), the opinion and the caveat (Markdown strings)."""
        blocks = [("Findings", self.findings), (self.spec.opinion_title, self.opinion), ("Caveat", self.caveat)]
        return [(head, body) for head, body in blocks if body]


def _describe_device(records: Sequence[Mapping]) -> str:
    names = []
    for r in records:
        dev = str(r.get("device") or "")
        if dev.startswith("cuda"):
            name = str(r.get("host_device") or "GPU")
        elif dev:
            threads = r.get("cpu_threads")
            model = f"CPU {r['cpu_model']}" if r.get("cpu_model") else "CPU"
            name = f"{model} ({threads} thread{'s' if threads != 1 else ''})" if threads else model
        else:
            continue
        if name not in names:
            names.append(name)
    return ", ".join(names) or "not recorded"


def _describe_data(spec: PartSpec, profile: str, records: Sequence[Mapping]) -> str:
    """``"<spec.data>: <where>, <n> train / <m> test images"``; the folder named by
    ``spec.source`` in the records (e.g. part 4's faces) is added, so the line names the data
    the runs used, not a data set the spec assumes."""
    where = {"smoke": "generated images", "quick": "real sample data"}.get(profile, "full data set")
    used = sorted({Path(str(R.get_field(r, spec.source))).name for r in records
                   if spec.source and R.get_field(r, spec.source)})
    if used:
        where += f" ({', '.join(used)})"
    sizes = [(R.get_field(r, spec.sizes[0]), R.get_field(r, spec.sizes[1]))
             for r in records if spec.sizes and R.get_field(r, spec.sizes[0])]
    if sizes:
        n_train, n_test = max(sizes, key=lambda s: s[0])
        where += f", {n_train} train / {n_test} test images" if n_test else f", {n_train} train images"
    return f"{spec.data}: {where}"


SETUP_COLUMNS = {"optimizer": "recipe.optimizer", "lr": "recipe.lr", "schedule": "recipe.schedule",
                 "weight decay": "recipe.weight_decay", "epochs": "recipe.epochs", "precision": "amp",
                 "channels-last": "channels_last"}


def setup_table(records: Sequence[Mapping]):
    """The set-up table of a page: one row per distinct training set-up (recipe, precision)
    among ``records``, with how many of the runs used it and their seeds (``0-2``, ``0, 5``;
    ``-`` when not recorded): runs that differ only in their seed share a row (None without
    records)."""
    import pandas as pd

    rows: dict = {}
    for rec in records:
        if not isinstance(rec.get("recipe"), Mapping):
            continue
        row = tuple(("-" if R.get_field(rec, key) is None else str(R.get_field(rec, key)).lower())
                    for key in SETUP_COLUMNS.values())
        rows.setdefault(row, []).append(rec.get("seed"))
    if not rows:
        return None
    frame = pd.DataFrame(list(rows), columns=list(SETUP_COLUMNS))
    frame.insert(0, "runs", [len(seeds) for seeds in rows.values()])
    frame["seeds"] = [_seed_list(seeds) for seeds in rows.values()]
    return frame


def _seed_list(values) -> str:
    """``"0-2"`` for consecutive seeds, ``"0, 5"`` otherwise, ``"-"`` when none is recorded."""
    vals = sorted({int(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)})
    if len(vals) > 2 and vals == list(range(vals[0], vals[-1] + 1)):
        return f"{vals[0]}-{vals[-1]}"
    return ", ".join(map(str, vals)) or "-"


def _span(values) -> str:
    vals = sorted({int(v) for v in values if isinstance(v, (int, float))})
    if not vals:
        return "-"
    return str(vals[0]) if len(vals) == 1 else f"{vals[0]}-{vals[-1]}"


def pick_figures(spec: PartSpec, folder: Optional[Path] = None, limit: int = 2) -> list:
    """The part's notebook figures to place: the first ``limit`` of ``spec.figures`` that exist."""
    folder = Path(folder or figures_dir())
    return [p for p in (folder / f"{name}.png" for name in spec.figures) if p.is_file()][:limit]


def _trust_line(profile: str, device: str, data: str, records: Sequence[Mapping]) -> str:
    """The one line a reader needs to trust a page: profile, device, data, epochs, seeds,
    runs, when they finished, and outside the full profile that these are not the
    assignment's results."""
    epochs = _span(r.get("epochs_done", r.get("epochs")) for r in records)
    seeds = _span(r.get("seed") for r in records)
    seeds = "not recorded" if seeds == "-" else seeds
    last = max(str(r.get("finished", r.get("created", ""))) for r in records)[:16].replace("T", " ")
    line = (f"profile {profile} | device {device} | data {data} | epochs {epochs} | seeds {seeds} | "
            f"{len(records)} run(s), last finished {last}")
    return line + (f" | {profile} profile: not the assignment's result" if profile != "full" else "")


def _caveat(profile: str, epochs: str, device: str, seeded: bool = False) -> str:
    """The profile's caveat; ``seeded``: some row holds the runs of several seeds."""
    if profile == "smoke":
        runs = "short runs" if seeded else "a single short run per model"
        return f"Smoke profile: generated images and {runs}; the numbers check the pipeline, not the methods."
    if profile == "quick":
        noise = ("A ± is the sample standard deviation of a row's runs over seeds; a gap between two rows "
                 "counts only beyond their combined spread (the findings say which do)" if seeded else
                 "Gaps of a few points are within run-to-run noise")
        return (f"Quick profile: a small real subset and {epochs} epoch(s) on {device}. {noise}, and the "
                "ranking can change in the full run.")
    return ""


def _part_text(page: Page, module, records: list) -> None:
    """The part's own findings (on all its records, as its notebook) and opinion, onto the page."""
    page.opinion = getattr(module, "OPINION", "")
    findings = getattr(module, "findings", None)
    if findings is None:
        return
    try:
        page.findings = list(findings(records))
    except Exception as e:  # a broken generator must not cost the other parts their PDFs
        page.notes.append(f"{page.spec.part}.findings failed ({type(e).__name__}: {e}).")


def build_page(part, profile: Optional[str] = None, results_root: Optional[Path] = None,
               figures_root: Optional[Path] = None, text: bool = True) -> Page:
    """Collect one part's page from ``results/<profile>/...``, ``figures/`` and the part's
    module (``text=False`` leaves out the findings and the opinion, e.g. for the README)."""
    module = part_module(part)
    spec, profile = module.REPORT, resolve_profile(profile)
    loaded = {t.part: R.load_records(t.part, profile, results_root) for t in spec.tables}
    views = []
    for table in spec.tables:
        rows, note = select_rows(loaded[table.part], table, spec)
        views.append(TableView(table, build_table(rows, table.columns), rows, note))
    page = Page(spec=spec, profile=profile, meta="", tables=views, figures=pick_figures(spec, figures_root))
    shown = page.records
    data = _describe_data(spec, profile, shown)
    if shown:
        device = _describe_device(shown)
        page.meta = _trust_line(profile, device, data, shown)
        page.setup = setup_table(shown)
        seeded = any(len(seed_runs(row)) > 1 for view in views for row in view.records)
        page.caveat = _caveat(profile, _span(r.get("epochs_done", r.get("epochs")) for r in shown), device, seeded)
        if text:
            _part_text(page, module, [r for recs in loaded.values() for r in recs])
    else:
        page.meta = f"profile {profile} | data {data} | no finished runs yet"
        page.notes.append(f"Not run yet: no finished records for {spec.part} in profile {profile}. "
                          f"Run {' and '.join(spec.notebooks)} (make figures PROFILE={profile}).")
    for view in views:
        view.best_row = best_row(view.records, spec) if view is views[0] else None
        if shown and not view.records:
            view.note = f"not run yet in profile {profile}"
    if spec.figures and not page.figures:
        page.notes.append(f"No saved figure yet ({', '.join(n + '.png' for n in spec.figures)}, "
                          f"written by {' and '.join(spec.notebooks)}).")
    return page


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
    if page.setup is not None and len(page.setup):
        lines += ["**Set-up** (the recipes of the runs above, from their records)", "",
                  R.table_markdown(page.setup.set_index("runs"), disable_numparse=True), ""]
    return "\n".join(lines).rstrip() + "\n"


def text_markdown(page: Page) -> str:
    """Findings (bullets, as the notebooks show them), opinion and caveat as Markdown."""
    parts = []
    for head, body in page.text_blocks():
        if isinstance(body, list):
            parts.append(f"**{head}.**\n\n{as_markdown(body)}")
        elif body.lstrip().startswith("- "):  # a list: it must start on its own line to stay one
            parts.append(f"**{head}.**\n\n{body}")
        else:
            parts.append(f"**{head}.** {body}")
    return "\n\n".join(parts) + "\n"


def show_page(page: Page, width: float = 7.3, height: float = 3.0, figure_format: str = "png") -> None:
    """Display the page in a notebook: header and tables, the figure row, the text.

    The header and tables are one display bundle with Markdown (what JupyterLab shows) and
    LaTeX (:func:`kdutils.tools.pdf.page_latex`: what ``nbconvert --to pdf`` prints, unnumbered
    headings, tables that fit the text width); so is the text (:func:`text_markdown`,
    :func:`kdutils.tools.pdf.text_latex`). The figure row is a 300-dpi PNG, with
    ``figure_format="pdf"`` (the LaTeX export) a vector PDF whose height and the text size
    are chosen so that the page fits one A4 sheet (:func:`kdutils.tools.pdf.latex_layout`).
    """
    import io

    from IPython.display import Image, display
    from matplotlib.figure import Figure

    if figure_format not in ("png", "pdf"):
        raise ValueError(f"figure_format must be 'png' or 'pdf', got {figure_format!r}")
    size_command = r"\small"
    if figure_format == "pdf":
        size_command, height = pdf.latex_layout(page)
    display({"text/markdown": page_markdown(page), "text/latex": pdf.page_latex(page),
             "text/plain": page.title}, raw=True)
    panels = pdf.figure_panels(page)
    if panels:  # no taller than the panels need at this width
        height = max(1.0, min(height, pdf.rows_height(pdf.plan_rows(panels, width, height))))
    fig = Figure(figsize=(width, height))
    pdf.draw_figures(page, fig, [0.0, 0.0, 1.0, 1.0])
    out = io.BytesIO()
    if figure_format == "pdf":
        import base64

        fig.savefig(out, format="pdf", bbox_inches="tight")
        display({"application/pdf": base64.b64encode(out.getvalue()).decode("ascii"),
                 "text/plain": f"{page.title}: figure row"}, raw=True)
    else:
        fig.savefig(out, format="png", dpi=300, bbox_inches="tight")
        display(Image(out.getvalue(), width=int(width * 96)))
    display({"text/markdown": text_markdown(page), "text/latex": pdf.text_latex(page, size_command),
             "text/plain": "findings and opinion"}, raw=True)


def repo_slug() -> str:
    """``owner/name`` of the GitHub repository (from ``KD_REPO_URL``, as the set-up cell)."""
    url = os.environ.get("KD_REPO_URL", "https://github.com/kd-course/kd-course.git")
    return url.rstrip("/").removesuffix(".git").split("github.com/")[-1]


def colab_url(notebook: str) -> str:
    return f"https://colab.research.google.com/github/{repo_slug()}/blob/main/notebooks/{notebook}"


def readme_tables(profile: Optional[str] = None, parts: Optional[Sequence[str]] = None) -> str:
    """The README's results block: per part, the key table of the last run with its profile,
    device and data, links to the notebooks (with Colab links) and the part's findings as the
    report prints them (margins and spreads computed from the records; not the opinion)."""
    profile = resolve_profile(profile)
    chosen = [normalize_part(p) for p in parts] if parts else list(PARTS)
    head = (f"Results of the last `make figures PROFILE={profile}` run, rendered from the records by "
            f"`python -m kdutils.tools.report --profile {profile} --readme` on {time.strftime('%Y-%m-%d')}.")
    if profile != "full":
        head += f" The {profile} profile checks the pipeline; its numbers are not the assignment's results."
    pages = (build_page(p, profile) for p in chosen)
    return head + "\n\n" + "\n".join(page_markdown(page, links=True, heading="###")
                                      + (f"\n**Findings** (computed from the records)\n\n{as_markdown(page.findings)}\n"
                                         if page.findings else "") for page in pages)


def update_readme(text: str, path: Path = REPO_ROOT / "README.md", start: str = README_START,
                  end: str = README_END) -> Path:
    """Replace what lies between the README's ``start`` and ``end`` markers (the results
    block by default) with ``text``."""
    content = Path(path).read_text()
    if start not in content or end not in content:
        raise ValueError(f"{path} has no {start} ... {end} block to replace")
    before, rest = content.split(start, 1)
    _, after = rest.split(end, 1)
    return atomic_write_text(path, f"{before}{start}\n{text.strip()}\n{end}{after}")


def small_labelled_copy(source: Path, target: Path, label: str, width_px: int = README_FIGURE_WIDTH_PX) -> Path:
    """``source`` (a figure PNG) redrawn ``width_px`` wide with ``label`` under it, as ``target``."""
    import matplotlib.image as mpimg
    from matplotlib.figure import Figure

    image = mpimg.imread(source)
    height_px = image.shape[0] * width_px / image.shape[1]
    dpi = 100
    fig = Figure(figsize=(width_px / dpi, (height_px + 22) / dpi), dpi=dpi)
    ax = fig.add_axes([0, 22 / (height_px + 22), 1, height_px / (height_px + 22)])
    ax.imshow(image, interpolation="antialiased")
    ax.axis("off")
    fig.text(0.005, 0.004, label, fontsize=8, color="0.35", va="bottom")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    return target


def readme_figures(profile: Optional[str] = None, figures_root: Optional[Path] = None,
                   out_dir: Path = REPO_ROOT / "docs" / "figures") -> tuple[str, list]:
    """Copy :data:`README_FIGURES` from ``figures/`` into ``out_dir`` (small, labelled with the
    profile and the date the notebook saved them) and return ``(the README's figures block,
    the copies)``. Figures not saved yet are named in the block instead."""
    profile = resolve_profile(profile)
    folder = Path(figures_root or figures_dir())
    lines, copies, missing = [], [], []
    for name in README_FIGURES:
        source = folder / f"{name}.png"
        if not source.is_file():
            missing.append(f"`{name}.png`")
            continue
        day = time.strftime("%Y-%m-%d", time.localtime(source.stat().st_mtime))
        label = f"{name}.png | {profile} profile | make figures of {day} | not the assignment's result" \
            if profile != "full" else f"{name}.png | full profile | make figures of {day}"
        copy = small_labelled_copy(source, Path(out_dir) / f"{name}.png", label)
        copies.append(copy)
        rel = os.path.relpath(copy, REPO_ROOT) if Path(copy).is_relative_to(REPO_ROOT) else str(copy)
        lines.append(f"![{name}: {profile} profile, {day}]({rel})")
    head = (f"Key figures of the last `make figures PROFILE={profile}` run (each labelled with its profile and "
            f"date; every figure is described in [figures/README.md](figures/README.md)).")
    if missing:
        head += f" Not saved yet: {', '.join(missing)}."
    return head + "\n\n" + "\n\n".join(lines), copies


# --------------------------------------------------------------------------- export
def export_reports(profile: Optional[str] = None, parts: Optional[Sequence[str]] = None, engine: str = "auto",
                   out_dir: Optional[Path] = None, log=print) -> list[dict]:
    """Write ``<part>_<profile>.pdf`` per part into ``reports/`` and record each in
    ``reports/manifest.json``; return the manifest entries of this call."""
    pdf.choose_engine(engine)  # an impossible engine fails before any page is built
    profile = resolve_profile(profile)
    chosen = [normalize_part(p) for p in parts] if parts else list(PARTS)
    out_dir = Path(out_dir or reports_dir())
    entries = []
    for part in chosen:
        path = out_dir / f"{part}_{profile}.pdf"
        page = build_page(part, profile)
        used, reason = pdf.write_pdf(page, path, engine)
        pages, size = pdf.pdf_pages(path)
        problems = _checked_layout(path)
        entries.append({"pdf": str(path.relative_to(out_dir)), "part": part, "profile": profile, "engine": used,
                        "reason": reason, "pages": pages, "page_size_pt": size, "records": len(page.records),
                        "figures": [str(f) for f in page.figures], "notes": page.notes, "layout_problems": problems,
                        "results": sorted({str(results_dir() / profile / t.part) for t in page.spec.tables}),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        if log:
            warn = "" if pages == 1 else f"  WARNING: {pages} pages, not one"
            warn += f"  WARNING: {len(problems)} layout problem(s), e.g. {problems[0]}" if problems else ""
            log(f"{part}: {path} ({pages} page, {size[0]:.0f}x{size[1]:.0f} pt, {len(page.records)} runs) "
                f"engine={used} ({reason}){warn}")
    _update_manifest(out_dir / "manifest.json", entries)
    return entries


def _checked_layout(path: Path) -> Optional[list]:
    """:func:`kdutils.tools.pdf.layout_problems` of a written PDF (None without pdfplumber)."""
    try:
        return pdf.layout_problems(path)
    except ImportError:
        return None


def _update_manifest(path: Path, entries: list) -> None:
    """Merge ``entries`` into the manifest (a broken one is rebuilt)."""
    manifest = {"reports": {}}
    if path.is_file():
        try:
            manifest = json.loads(path.read_text())
        except ValueError:
            pass
    manifest.setdefault("reports", {}).update({e["pdf"]: e for e in entries})
    manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    R.atomic_write_json(path, manifest)


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m kdutils.tools.report",
                                 description="One-page A4 PDF report per part from the run records (reports/).")
    ap.add_argument("--profile", default=None, help="smoke | quick | full (default: KD_PROFILE, else quick)")
    ap.add_argument("--parts", default="", help="comma-separated parts, e.g. 1,3 or part1 (default: all)")
    ap.add_argument("--engine", default="auto", choices=pdf.ENGINES,
                    help="latex (nbconvert + xelatex), matplotlib (pure Python), auto (latex when installed)")
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--readme", action="store_true", help="rewrite README.md's results block instead of PDFs")
    what.add_argument("--readme-tables", action="store_true", help="print the README results Markdown instead of PDFs")
    what.add_argument("--readme-figures", action="store_true",
                      help="copy the key figures, small and labelled, to docs/figures/ and rewrite README's figures block")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    parts = [p for p in args.parts.split(",") if p.strip()]
    try:
        if args.readme_figures:
            text, copies = readme_figures(args.profile)
            print(f"copied {len(copies)} figure(s) to docs/figures/; updated the figures block of "
                  f"{update_readme(text, start=FIGURES_START, end=FIGURES_END)}")
            return 0
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
