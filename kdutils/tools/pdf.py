"""The two ways a report page becomes a one-page A4 PDF, behind :func:`write_pdf`.

- ``latex``: the report notebook ``notebooks/report.ipynb`` is executed by papermill for the
  page's part (outputs in ``runs/<profile>/reports/``), its stream output (warnings,
  progress) removed, and exported with ``jupyter nbconvert --to pdf --no-input`` through an
  A4 template. Needs ``xelatex`` and ``pandoc`` (Debian/Ubuntu: ``apt-get install
  texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc``).
- ``matplotlib``: the page drawn on one A4 figure (:func:`draw_page`) and saved as PDF; pure
  Python, so a PDF is always produced.

``engine="auto"`` takes ``latex`` when ``xelatex`` and ``pandoc`` are on the PATH, else
``matplotlib``, and falls back to ``matplotlib`` when the LaTeX export fails; the engine
used and why are returned. A page is any object with the attributes of
:class:`kdutils.tools.report.Page` (this module does not import the report).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Sequence

from kdutils.core.fileio import atomic_write
from kdutils.core.profiles import REPO_ROOT, runs_dir

ENGINES = ("auto", "latex", "matplotlib")
LATEX_TOOLS = ("xelatex", "pandoc")
LATEX_PACKAGES = "texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc"
REPORT_NOTEBOOK = REPO_ROOT / "notebooks" / "report.ipynb"
A4_INCHES = (8.27, 11.69)  # 595 x 842 pt

#: nbconvert template for the LaTeX path: A4, narrow margins, no title block, no page number.
LATEX_TEMPLATE = r"""((*- extends 'index.tex.j2' -*))
((* block docclass *))\documentclass[10pt,a4paper]{article}((* endblock docclass *))
((* block margins *))\geometry{a4paper,margin=1.4cm}\pagestyle{empty}((* endblock margins *))
((* block maketitle *))((* endblock maketitle *))
"""


# --------------------------------------------------------------------------- the one interface
def missing_latex_tools() -> list:
    """The tools of the LaTeX path (:data:`LATEX_TOOLS`) that are not on the PATH."""
    return [tool for tool in LATEX_TOOLS if not shutil.which(tool)]


def latex_available() -> bool:
    return not missing_latex_tools()


def choose_engine(engine: str = "auto") -> tuple[str, str]:
    """``(engine to try, why)`` for ``engine`` (one of :data:`ENGINES`); ``latex`` without
    its tools raises RuntimeError naming the packages to install."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    missing = missing_latex_tools()
    if engine == "latex" and missing:
        raise RuntimeError(f"--engine latex needs {' and '.join(missing)} on the PATH (Debian/Ubuntu: "
                           f"apt-get install {LATEX_PACKAGES}); or use --engine matplotlib")
    if engine != "auto":
        return engine, f"--engine {engine}"
    if not missing:
        return "latex", "xelatex and pandoc found"
    return "matplotlib", "xelatex/pandoc not installed: pure-Python fallback"


def write_pdf(page, path: Path, engine: str = "auto") -> tuple[str, str]:
    """Write ``page`` as a one-page A4 PDF at ``path``; return ``(engine used, why)``.

    ``auto`` falls back to matplotlib when the LaTeX export fails (``latex`` raises instead).
    """
    used, reason = choose_engine(engine)
    if used == "latex":
        try:
            write_pdf_latex(page.spec.part, page.profile, path)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            if engine == "latex":
                raise
            last = [line for line in str(e).splitlines() if line.strip()][-1:] or [type(e).__name__]
            used, reason = "matplotlib", f"LaTeX export failed ({last[0].strip()}): pure-Python fallback"
    if used == "matplotlib":
        write_pdf_matplotlib(page, path, engine_note=f"matplotlib engine: {reason}")
    return used, reason


def pdf_pages(path: Path) -> tuple[int, list]:
    """(page count, [width, height] of the first page in points)."""
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    box = reader.pages[0].mediabox
    return len(reader.pages), [round(float(box.width), 1), round(float(box.height), 1)]


# --------------------------------------------------------------------------- LaTeX
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


# --------------------------------------------------------------------------- matplotlib
def _curve_records(page, limit: int = 8) -> list:
    """The first table's rows whose history has test top-1 per epoch (at most ``limit``)."""
    def has_curve(rec):
        return any(h.get("epoch") is not None and h.get("test_top1") is not None for h in rec.get("history") or [])

    rows = page.tables[0].records if page.tables else []
    return [r for r in rows if has_curve(r)][:limit]


def draw_figures(page, fig, rect: Sequence[float]) -> None:
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
    for i, panel in enumerate(panels):
        x = left + i * (w + gap)
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


def plain(text: str) -> str:
    """Markdown emphasis and code marks removed (``**a**``, ``*a*``, ```a```) for plain drawing."""
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"\1", text)
    return text.replace("`", "")


def _wrap(text: str, size: float, width_in: float) -> list:
    return textwrap.wrap(text, max(20, int(width_in * 72 / (0.53 * size))), break_on_hyphens=False) or [""]


def _line_h(size: float) -> float:
    return 1.35 * size / 72 / A4_INCHES[1]


def _wrapped(fig, x: float, y: float, text: str, size: float, width_in: float, **kw) -> float:
    """Draw ``text`` wrapped to ``width_in`` inches from (x, y) down; return the new y."""
    for line in _wrap(text, size, width_in):
        fig.text(x, y, line, fontsize=size, va="top", **kw)
        y -= _line_h(size)
    return y


def markdown_items(text: str) -> list:
    """``[(text, bullet)]`` of a Markdown string: one item per paragraph (blank-line
    separated) or per ``- `` list item (continuation lines joined), emphasis removed."""
    items = []
    for block in text.split("\n\n"):
        for i, chunk in enumerate(re.split(r"^- ", block.strip(), flags=re.M)):
            words = " ".join(chunk.split())
            if words:
                items.append((plain(words), i > 0))
    return items


def _paragraphs(blocks) -> list:
    """``[(head, [(text, bullet)])]`` from the page's ``(head, body)`` blocks: a list body is
    one bullet per item, a string body is Markdown (:func:`markdown_items`)."""
    return [(head, [(plain(t), True) for t in body] if isinstance(body, list) else markdown_items(body))
            for head, body in blocks]


def _text_height(paragraphs, size: float, width_in: float) -> float:
    """Inches the text blocks take at font ``size``."""
    lines = sum(len(_wrap(t, size, width_in - (0.15 if b else 0))) for _, items in paragraphs for t, b in items)
    gaps = sum(len(items) for _, items in paragraphs)
    return len(paragraphs) * 0.22 + lines * 1.35 * size / 72 + gaps * 0.03


def _draw_text(fig, paragraphs, x: float, y: float, size: float, width_in: float) -> float:
    H = A4_INCHES[1]
    for head, items in paragraphs:
        fig.text(x, y, head, fontsize=size + 1, fontweight="bold", va="top")
        y -= 0.2 / H
        for text, bullet in items:
            if bullet:
                fig.text(x, y, "\u2022", fontsize=size, va="top")
            indent = 0.15 / A4_INCHES[0] if bullet else 0.0
            y = _wrapped(fig, x + indent, y, text, size, width_in - (0.15 if bullet else 0)) - 0.03 / H
        y -= 0.02 / H
    return y


def _draw_table(fig, view, x: float, y: float, width: float, row_h: float) -> float:
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


def _draw_tables(fig, page, m: float, y: float, text_w: float) -> float:
    H = A4_INCHES[1]
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
    return y


def draw_page(page, engine_note: str = "matplotlib"):
    """The page as one A4 matplotlib Figure (not attached to pyplot): title, meta line,
    notes, tables, the figure row, then the text blocks at the largest font size (8.5 pt
    down to 5.5 pt) that leaves the figures at least 1.6 inches."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    W, H = A4_INCHES
    fig = Figure(figsize=A4_INCHES)
    m, text_w = 0.5 / W, W - 1.0  # side margin (figure fraction), text width (inches)
    y = 1 - 0.45 / H
    fig.text(m, y, page.title, fontsize=min(13.0, text_w * 72 / (0.62 * len(page.title))), fontweight="bold",
             va="top")
    y = _wrapped(fig, m, y - 0.3 / H, page.meta, 7.5, text_w, color="0.3") - 0.05 / H
    fig.add_artist(Line2D([m, 1 - m], [y, y], transform=fig.transFigure, color="0.6", linewidth=0.6))
    y -= 0.1 / H
    for note in page.notes:
        y = _wrapped(fig, m, y, note, 8, text_w, color="#a33") - 0.05 / H
    y = _draw_tables(fig, page, m, y, text_w)

    paragraphs = _paragraphs(page.text_blocks())
    footer, room = 0.55, y * H - 0.55 - 0.15
    size = next((s for s in (8.5, 8, 7.5, 7, 6.5, 6) if room - _text_height(paragraphs, s, text_w) >= 1.6), 5.5)
    fig_h = min(4.6, max(1.6, room - _text_height(paragraphs, size, text_w)))
    draw_figures(page, fig, [m, y - fig_h / H, 1 - 2 * m, fig_h / H])
    _draw_text(fig, paragraphs, m, y - (fig_h + 0.12) / H, size, text_w)
    foot = f"{page.sources} | exported by kdutils.tools.report ({engine_note}) on {time.strftime('%Y-%m-%d %H:%M')}"
    _wrapped(fig, m, (footer - 0.13) / H, foot, 6, text_w, color="0.45")
    return fig


def write_pdf_matplotlib(page, path: Path, engine_note: str = "matplotlib") -> Path:
    """Draw the page and save it as a one-page A4 PDF (TrueType fonts, so text is searchable)."""
    import matplotlib

    fig = draw_page(page, engine_note)
    meta = {"Title": page.title, "Subject": page.meta, "Creator": "kdutils.tools.report (matplotlib)"}
    with matplotlib.rc_context({"pdf.fonttype": 42}):
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="pdf", metadata=meta))
    return Path(path)
