"""One-page A4 report per assignment part (``make report``), built from the run records,
the figures the notebooks saved and the parts' own text.

A part's page holds the title; a line with profile, device, data and epochs; the part's key
table(s), rendered from the records in ``results/<profile>/<part>/`` (never typed); the
epoch-vs-test-accuracy graph from the same records beside the part's notebook figures
(``figures/part<N>_*.png``); then the part's findings (``partN.findings(records)``) and argued
opinion (``partN.OPINION``), the very text its notebook displays, and the profile's caveat.
Missing records or figures put a "not run yet" note on the page instead of failing.

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
from kdutils.core.fileio import atomic_write_text
from kdutils.core.findings import as_markdown
from kdutils.core.profiles import REPO_ROOT, figures_dir, reports_dir, resolve_profile, results_dir
from kdutils.core.report_spec import PartSpec, Table, best_row, build_table, select_rows
from kdutils.tools import pdf

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
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
    """A table as shown: display strings, the records of its rows, which row is the best."""

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
            name = f"CPU ({threads} thread{'s' if threads != 1 else ''})" if threads else "CPU"
        else:
            continue
        if name not in names:
            names.append(name)
    return ", ".join(names) or "not recorded"


def _describe_data(spec: PartSpec, profile: str, records: Sequence[Mapping]) -> str:
    where = {"smoke": "generated images", "quick": "real sample data"}.get(profile, "full data set")
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


def _caveat(profile: str, epochs: str, device: str) -> str:
    if profile == "smoke":
        return ("Smoke profile: generated images and a single short run per model; the numbers check "
                "the pipeline, not the methods.")
    if profile == "quick":
        return (f"Quick profile: a small real subset and {epochs} epoch(s) on {device}. Gaps of a few "
                "points are within run-to-run noise and the ranking can change in the full run.")
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
        epochs = _span(r.get("epochs_done", r.get("epochs")) for r in shown)
        last = max(str(r.get("finished", r.get("created", ""))) for r in shown)[:16].replace("T", " ")
        page.meta = (f"profile {profile} | device {device} | data {data} | epochs {epochs} | "
                     f"{len(shown)} run(s), last finished {last}")
        page.caveat = _caveat(profile, epochs, device)
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
    return "\n".join(lines).rstrip() + "\n"


def text_markdown(page: Page) -> str:
    """Findings (bullets, as the notebooks show them), opinion and caveat as Markdown."""
    parts = []
    for head, body in page.text_blocks():
        parts.append(f"**{head}.**\n\n{as_markdown(body)}" if isinstance(body, list) else f"**{head}.** {body}")
    return "\n\n".join(parts) + "\n"


def show_page(page: Page, width: float = 7.3, height: float = 3.0) -> None:
    """Display the page in a notebook: Markdown header and table, the figure row (as a PNG,
    whatever the kernel's matplotlib backend), the text."""
    import io

    from IPython.display import Image, Markdown, display
    from matplotlib.figure import Figure

    display(Markdown(page_markdown(page)))
    fig = Figure(figsize=(width, height))
    pdf.draw_figures(page, fig, [0.0, 0.0, 1.0, 1.0])
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
    pages = (build_page(p, profile, text=False) for p in chosen)
    return head + "\n\n" + "\n".join(page_markdown(page, links=True, heading="###") for page in pages)


def update_readme(text: str, path: Path = REPO_ROOT / "README.md") -> Path:
    """Replace what lies between the README's results markers with ``text``."""
    content = Path(path).read_text()
    if README_START not in content or README_END not in content:
        raise ValueError(f"{path} has no {README_START} ... {README_END} block to replace")
    before, rest = content.split(README_START, 1)
    _, after = rest.split(README_END, 1)
    return atomic_write_text(path, f"{before}{README_START}\n{text.strip()}\n{README_END}{after}")


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
        entries.append({"pdf": str(path.relative_to(out_dir)), "part": part, "profile": profile, "engine": used,
                        "reason": reason, "pages": pages, "page_size_pt": size, "records": len(page.records),
                        "figures": [str(f) for f in page.figures], "notes": page.notes,
                        "results": sorted({str(results_dir() / profile / t.part) for t in page.spec.tables}),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        if log:
            warn = "" if pages == 1 else f"  WARNING: {pages} pages, not one"
            log(f"{part}: {path} ({pages} page, {size[0]:.0f}x{size[1]:.0f} pt, {len(page.records)} runs) "
                f"engine={used} ({reason}){warn}")
    _update_manifest(out_dir / "manifest.json", entries)
    return entries


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
