"""The two ways a report page becomes a one-page A4 PDF, behind :func:`write_pdf`.

- ``latex``: the report notebook ``notebooks/report.ipynb`` is executed by papermill for the
  page's part (outputs in ``runs/<profile>/reports/``), its stream output (warnings,
  progress) removed, and exported with ``jupyter nbconvert --to pdf --no-input`` through an
  A4 template (unnumbered headings, no title block). The page's header and tables reach
  LaTeX as LaTeX (:func:`page_latex`: a tabular scaled down to the text width when it is
  wider, so columns never overlap and headers never wrap), the figure row as a vector PDF. Needs ``xelatex`` and ``pandoc`` (Debian/Ubuntu: ``apt-get install
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

#: nbconvert template for the LaTeX path: A4, narrow margins, no title block, no page number,
#: no section numbers (a Markdown heading would print as "0.1 ..."), figures at the full
#: text width and at most ``@FIGHEIGHT@`` of the page high, ``\fittable`` (used by
#: :func:`page_latex`: a table at its natural width, scaled down to the text width only when
#: it is wider) and ``\kdtextsize{<size>}`` (used by :func:`text_latex`: the size chosen by
#: :func:`latex_layout`, or ``@TEXTSIZE@`` when a retry asks for smaller text).
LATEX_TEMPLATE = r"""((*- extends 'index.tex.j2' -*))
((* block docclass *))\documentclass[10pt,a4paper]{article}((* endblock docclass *))
((* block margins *))\geometry{a4paper,margin=1.4cm}\pagestyle{empty}\setcounter{secnumdepth}{0}
\setlength{\parskip}{3pt}
\newcommand{\fittable}[1]{\adjustbox{max width=\linewidth}{#1}}
\newcommand{\kdtextsize}[1]{@TEXTSIZE@}((* endblock margins *))
((* block maketitle *))((* endblock maketitle *))
((* block figure scoped *))\begin{center}\adjustimage{max size={\linewidth}{@FIGHEIGHT@\paperheight}}{((( filename )))}\end{center}
((* endblock figure *))
"""
#: The LaTeX export's attempts, in order, until the page fits one A4 sheet: (text size,
#: largest figure height as a share of the page). The first keeps :func:`latex_layout`'s size.
LATEX_FIT_LEVELS = (("#1", "0.42"), (r"\footnotesize", "0.26"), (r"\scriptsize", "0.18"), (r"\scriptsize", "0.12"),
                    (r"\tiny", "0.12"))


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


# --------------------------------------------------------------------------- checking a page
def _overlap_share(a: dict, b: dict) -> float:
    """Intersection area of two word boxes over the smaller box's area (0 when apart)."""
    w = min(a["x1"], b["x1"]) - max(a["x0"], b["x0"])
    h = min(a["bottom"], b["bottom"]) - max(a["top"], b["top"])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a["x1"] - a["x0"]) * (a["bottom"] - a["top"]), (b["x1"] - b["x0"]) * (b["bottom"] - b["top"]))
    return w * h / smaller if smaller > 0 else 0.0


def layout_problems(path: Path, min_share: float = 0.3) -> list:
    """What is wrong with the printed text of a PDF, read from the positions of its
    characters (pdfplumber): pages beyond the first, characters that overlap another by
    more than ``min_share`` of the smaller one's area (columns or lines printed on top of
    each other; neighbours in the text stream may touch: kerning tucks a comma under a T),
    characters outside the page. An empty list:
    one page, every character legible. Needs ``pdfplumber``."""
    import pdfplumber

    problems = []
    with pdfplumber.open(str(path)) as doc:
        if len(doc.pages) != 1:
            problems.append(f"{len(doc.pages)} pages, not one")
        for number, page in enumerate(doc.pages, 1):
            chars = sorted(({**c, "order": k} for k, c in enumerate(page.chars)  # rotated text: boxes unreliable
                            if c["text"].strip() and c.get("upright", True)),
                           key=lambda c: c["top"])
            for i, a in enumerate(chars):
                if a["x0"] < -1 or a["top"] < -1 or a["x1"] > page.width + 1 or a["bottom"] > page.height + 1:
                    problems.append(f"page {number}: {a['text']!r} at ({a['x0']:.0f}, {a['top']:.0f}) pt lies "
                                    "outside the page")
                for b in chars[i + 1:]:
                    if b["top"] >= a["bottom"]:
                        break
                    if abs(a["order"] - b["order"]) > 1 and _overlap_share(a, b) > min_share:  # kerned neighbours may touch
                        problems.append(f"page {number}: {a['text']!r} and {b['text']!r} overlap at "
                                        f"({a['x0']:.0f}, {a['top']:.0f}) pt")
    return problems


# --------------------------------------------------------------------------- LaTeX
def write_pdf_latex(part: str, profile: str, path: Path, timeout: float = 600) -> Path:
    """Execute the report notebook for ``part`` (papermill, as ``make figures`` runs notebooks),
    keep only what its code cells display (no Markdown intro, no stream output such as
    warnings or progress), export it with ``jupyter nbconvert --to pdf --no-input`` through
    the A4 template; when the page runs onto a second sheet, export again with smaller text
    and figures (:data:`LATEX_FIT_LEVELS`). Raises RuntimeError when a step fails or the page
    never fits (``auto`` then falls back to matplotlib)."""
    import nbformat

    from kdutils.tools.processes import run_notebook

    outcome = run_notebook(REPORT_NOTEBOOK, runs_dir() / profile / "reports", f"report_{part}",
                           {"profile": profile, "part": part, "figure_format": "pdf"}, timeout=timeout,
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
        for size, height in LATEX_FIT_LEVELS:
            built = _nbconvert_pdf(src, Path(tmp), size, height, timeout)
            pages = pdf_pages(built)[0]
            if pages == 1:
                break
        if pages != 1:
            raise RuntimeError(f"the LaTeX page of {part} does not fit one A4 page even at the smallest text "
                               f"({pages} pages)")
        atomic_write(path, lambda t: shutil.copyfile(built, t))
    return path


def _nbconvert_pdf(src: Path, folder: Path, text_size: str, fig_height: str, timeout: float) -> Path:
    """``jupyter nbconvert --to pdf --no-input`` of ``src`` through :data:`LATEX_TEMPLATE`
    (``text_size``, ``fig_height`` filled in); the PDF's path (RuntimeError on failure)."""
    template = folder / "a4_report.tex.j2"
    template.write_text(LATEX_TEMPLATE.replace("@TEXTSIZE@", text_size).replace("@FIGHEIGHT@", fig_height))
    cmd = [sys.executable, "-m", "nbconvert", "--to", "pdf", "--no-input", "--template-file", str(template),
           "--output-dir", str(folder), "--output", src.stem, str(src)]
    done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=timeout)
    built = folder / f"{src.stem}.pdf"
    if done.returncode != 0 or not built.is_file():
        tail = "\n".join((done.stderr or done.stdout).splitlines()[-15:])
        raise RuntimeError(f"jupyter nbconvert --to pdf failed for {src.stem} (exit {done.returncode}):\n{tail}")
    return built


# --------------------------------------------------------------------------- LaTeX page
_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text) -> str:
    r"""``text`` with LaTeX's special characters escaped (``50% of a_b`` -> ``50\% of a\_b``)."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def latex_inline(text: str) -> str:
    r"""One line of Markdown as LaTeX: escaped, ``**bold**`` -> ``\textbf``, ``*italic*`` ->
    ``\emph``, ```code``` -> ``\texttt``."""
    out = latex_escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"\\textbf{\1}", out)
    out = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"\\emph{\1}", out)
    return re.sub(r"`(.+?)`", r"\\texttt{\1}", out)


_NUMBER = r"[-+]?[\d.,]+\s*(%|[kMG]|kB|MB|s|min|h|x)?"


def _numeric(value: str) -> bool:
    """A number cell (``71.2``, ``1.6 min``, a mean over seeds ``42.0 ± 2.0``) or ``-``."""
    return bool(re.fullmatch(f"{_NUMBER}(\\s*±\\s*{_NUMBER})?", value.strip())) or value.strip() == "-"


def latex_table(frame, best_row=None) -> str:
    r"""A DataFrame of display strings as a booktabs tabular inside ``\fittable`` (the
    template's command: scaled down to the text width only when wider). Columns whose cells
    are all numbers are right-aligned, headers never wrap, the ``best_row`` is bold."""
    columns = list(frame.columns)
    cells = frame.astype(str).values.tolist()
    align = "".join("r" if i and all(_numeric(row[i]) for row in cells) else "l" for i in range(len(columns)))
    lines = [r"\fittable{\begin{tabular}{" + align + "}", r"\toprule",
             " & ".join(r"\textbf{" + latex_escape(c) + "}" for c in columns) + r" \\", r"\midrule"]
    for i, row in enumerate(cells):
        values = [latex_escape(v) for v in row]
        if i == best_row:
            values = [r"\textbf{" + v + "}" for v in values]
        lines.append(" & ".join(values) + r" \\")
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}}"])


#: Sizes of the LaTeX page's text blocks, largest first: (LaTeX size command, points).
LATEX_TEXT_SIZES = ((r"\small", 9.0), (r"\footnotesize", 8.0), (r"\scriptsize", 7.0))
#: Text area of the LaTeX page (A4 less the template's 1.4 cm margins), inches.
LATEX_TEXT_AREA = (A4_INCHES[0] - 2.8 / 2.54, A4_INCHES[1] - 2.8 / 2.54)


def _latex_tables_height(page) -> float:
    """Inches the LaTeX page's header, notes, tables and set-up table take (an estimate that
    errs on the large side: rows at 0.17 in, titles and notes at 0.3 in)."""
    setup = getattr(page, "setup", None)
    rows = sum(len(v.frame) + 1 for v in page.tables if len(v.frame)) + (len(setup) + 1 if setup is not None else 0)
    titles = len(page.tables) * 2 + (1 if setup is not None else 0) + len(page.notes)
    return 0.9 + 0.17 * rows + 0.3 * titles


def latex_layout(page) -> tuple:
    """``(size command, figure-row height in inches)`` for the LaTeX page: the largest text
    size (:data:`LATEX_TEXT_SIZES`) that leaves the figure row at least 2 inches on one A4
    page, the figure rows taking what is left (at most 6.5 inches)."""
    width, height = LATEX_TEXT_AREA
    paragraphs = _paragraphs(page.text_blocks())
    room = height - 0.35 - _latex_tables_height(page)
    for command, size in LATEX_TEXT_SIZES:
        left = room - _text_height(paragraphs, size, width, em=0.47)
        if left >= 2.0:
            return command, min(6.5, left)
    return LATEX_TEXT_SIZES[-1][0], 1.6


def text_latex(page, size_command: str = r"\small") -> str:
    """The page's text blocks (findings, opinion, caveat) as LaTeX at ``size_command``: a bold
    run-in heading, paragraphs, tight bullet lists; Markdown emphasis becomes LaTeX's."""
    out = [r"{\kdtextsize{" + size_command + "}"]
    for head, body in page.text_blocks():
        items = [(t, True) for t in body] if isinstance(body, list) else markdown_items(body, keep_marks=True)
        out.append(r"\par\vspace{3pt}\noindent\textbf{" + latex_escape(head) + r".}")
        in_list = False
        for text, bullet in items:
            if bullet and not in_list:
                out.append(r"\begin{itemize}[nosep,leftmargin=1.3em]")
            elif not bullet and in_list:
                out.append(r"\end{itemize}")
            in_list = bullet
            out.append((r"\item " if bullet else r"\par ") + latex_inline(text))
        if in_list:
            out.append(r"\end{itemize}")
    return "\n".join(out + [r"\par}"]) + "\n"


def page_latex(page) -> str:
    """The page's header and tables as LaTeX for the report notebook's export: the title
    (an unnumbered heading), the meta line, notes, each table with its title and note, the
    set-up table."""
    out = [r"{\Large\bfseries " + latex_escape(page.title) + r"\par}\vspace{2pt}",
           r"{\footnotesize\color{darkgray}" + latex_escape(page.meta) + r"\par}\vspace{2pt}\hrule\vspace{4pt}"]
    out += [r"{\small\color{red!60!black}" + latex_inline(note) + r"\par}" for note in page.notes
            if not note.startswith("No saved figure")]
    for i, view in enumerate(page.tables):
        out.append(r"\vspace{4pt}{\small\textbf{Table " + f"{i + 1} - " + latex_escape(view.spec.title) + r"}\par}")
        if len(view.frame):
            out.append(r"{\footnotesize\setlength{\tabcolsep}{4pt}" + latex_table(view.frame, view.best_row) + r"\par}")
        under = [f"Rows: {view.note}." if view.note else "",
                 f"Bold: the best run by {page.spec.metric.title}." if view.best_row is not None else ""]
        if any(under):
            out.append(r"{\scriptsize\itshape\color{darkgray}" + latex_escape(" ".join(u for u in under if u))
                       + r"\par}")
    setup = getattr(page, "setup", None)
    if setup is not None and len(setup):
        out.append(r"\vspace{4pt}{\small\textbf{Set-up} (the recipes of the runs above, from their records)\par}")
        out.append(r"{\scriptsize\setlength{\tabcolsep}{4pt}" + latex_table(setup) + r"\par}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- matplotlib
def _curve_records(page, limit: int = 8) -> list:
    """The first table's rows whose history has test top-1 per epoch (at most ``limit``)."""
    def has_curve(rec):
        return any(h.get("epoch") is not None and h.get("test_top1") is not None for h in rec.get("history") or [])

    rows = page.tables[0].records if page.tables else []
    return [r for r in rows if has_curve(r)][:limit]


def figure_panels(page) -> list:
    """What the figure rows show: ``"curves"`` (test top-1 vs epoch from the records, when
    any row has a history) and the paths of the part's notebook figures."""
    return (["curves"] if _curve_records(page) else []) + list(page.figures)


#: Width / height of the curves panel; a notebook figure keeps its own.
CURVES_ASPECT = 1.6
PANEL_GAP_IN = 0.35  # inches between panels and between rows (room for axis labels and titles)


def _aspect(panel) -> float:
    if panel == "curves":
        return CURVES_ASPECT
    import matplotlib.image as mpimg

    height, width = mpimg.imread(panel).shape[:2]
    return width / height


def plan_rows(panels: list, width_in: float, height_in: float) -> list:
    """``[(panels of the row, row height in inches)]`` for figure panels in a ``width_in`` x
    ``height_in`` area. Each panel keeps its aspect ratio (:func:`_aspect`), so a wide
    notebook figure gets a wide slot. Two layouts are compared and the one whose panels
    cover more area wins: all panels in one row, or (two or more panels) the first panel
    (the curves) on a row of its own above the others. No row is taller than its panels
    need at the full width."""
    if not panels:
        return []

    def natural(row):
        return (width_in - PANEL_GAP_IN * (len(row) - 1)) / sum(_aspect(p) for p in row)

    def area(plan):
        return sum(_aspect(p) * h * h for row, h in plan for p in row)

    one = [(panels, min(height_in, natural(panels)))]
    if len(panels) < 2:
        return one
    first, rest = panels[:1], panels[1:]
    room = height_in - PANEL_GAP_IN
    h_rest = min(natural(rest), room / 2)
    h_first = min(natural(first), room - h_rest)
    h_rest = min(natural(rest), room - h_first)
    two = [(first, h_first), (rest, h_rest)]
    return two if h_first > 0 and h_rest > 0 and area(two) > area(one) else one


def rows_height(plan: list) -> float:
    """Inches a :func:`plan_rows` plan takes, gaps included."""
    return sum(h for _, h in plan) + PANEL_GAP_IN * max(0, len(plan) - 1)


def draw_figures(page, fig, rect: Sequence[float]) -> None:
    """The figure rows in ``rect`` (left, bottom, width, height in figure fractions), laid
    out by :func:`plan_rows`: test top-1 vs epoch from the records, and the part's notebook
    figures beside or below it, each at its own aspect ratio, centred in its row."""
    left, bottom, width, height = rect
    fig_w, fig_h = fig.get_size_inches()
    panels = figure_panels(page)
    if not panels:
        ax = fig.add_axes(rect)
        ax.axis("off")
        ax.text(0.5, 0.5, "No training curves or saved figures yet.", ha="center", va="center",
                fontsize=9, color="0.4")
        return
    plan = plan_rows(panels, width * fig_w, height * fig_h)
    top = bottom + height
    for row, row_h in plan:
        widths = [_aspect(p) * row_h for p in row]
        x = left * fig_w + (width * fig_w - sum(widths) - PANEL_GAP_IN * (len(row) - 1)) / 2
        top -= row_h / fig_h
        for panel, w in zip(row, widths):
            _draw_panel(page, fig, panel, [x / fig_w, top, w / fig_w, row_h / fig_h], wide=len(row) == 1)
            x += w + PANEL_GAP_IN
        top -= PANEL_GAP_IN / fig_h


def _title(ax, text: str, width_in: float, largest: float = 7.5) -> None:
    """``text`` as the axes' title at the largest size (down to 4.5 pt) that keeps it within
    ``width_in`` inches, so neighbouring panels' titles never run into each other."""
    ax.set_title(text, fontsize=max(4.5, min(largest, width_in * 72 / (0.6 * max(len(text), 1)))))


def _draw_panel(page, fig, panel, rect: Sequence[float], wide: bool) -> None:
    """One panel: the curves from the records, or a notebook figure (its file name above)."""
    import matplotlib.image as mpimg

    from kdutils.core.plots import plot_curves

    x, y, w, h = rect
    fig_w, fig_h = fig.get_size_inches()
    title, below = 0.2 / fig_h, 0.36 / fig_h  # room for the title above, tick labels and x label below
    if panel == "curves":
        curves = _curve_records(page)
        ax = fig.add_axes([x + 0.45 / fig_w, y + below, w - 0.5 / fig_w, max(h - below - title, 0.2 / fig_h)])
        plot_curves(curves, keys=("test_top1",), ylabel="test top-1 (%)", ax=ax, labels=[r["label"] for r in curves])
        _title(ax, "test top-1 vs epoch (from the records)", w * fig_w)
        ax.tick_params(labelsize=6.5)
        ax.xaxis.label.set_size(7)
        ax.yaxis.label.set_size(7)
        if ax.get_legend() and not (h * fig_h >= 1.5 and _fit_legend(ax, len(curves), wide, h * fig_h < 2.0)):
            if ax.get_legend():  # too short or too narrow for a legend: the lines are Table 1's rows
                ax.get_legend().remove()
            _title(ax, "test top-1 vs epoch (lines: Table 1's rows)", w * fig_w)
        return
    ax = fig.add_axes([x, y, w, h - title])
    ax.imshow(mpimg.imread(panel))
    _title(ax, f"figures/{panel.name}", w * fig_w)
    ax.axis("off")


def _fit_legend(ax, n_lines: int, wide: bool, short_panel: bool) -> bool:
    """Give ``ax`` a legend that lies within the axes: the preferred one (a short panel with
    more than four lines: 4.5 pt in two columns, else 5.5 pt, two columns on a wide panel),
    else smaller ones; False (no legend left) when none fits, e.g. long labels on a narrow
    panel, whose legend would be printed over the tick labels beside it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = ax.figure
    short = short_panel and n_lines > 4
    first = (4.5 if short else 5.5, 2 if (n_lines > 4 and wide) or short else 1)
    renderer = FigureCanvasAgg(fig).get_renderer() if not hasattr(fig.canvas, "get_renderer") \
        else fig.canvas.get_renderer()
    room = ax.get_window_extent(renderer)
    for size, ncol in dict.fromkeys((first, (4.5, first[1]), (4.5, 1), (4.5, 2))):
        box = ax.legend(fontsize=size, ncol=ncol, framealpha=0.6).get_window_extent(renderer)
        if box.width <= room.width and box.height <= room.height:
            return True
    ax.get_legend().remove()
    return False


def plain(text: str) -> str:
    """Markdown emphasis and code marks removed (``**a**``, ``*a*``, ```a```) for plain drawing."""
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"\1", text)
    return text.replace("`", "")


def _wrap(text: str, size: float, width_in: float, em: float = 0.53) -> list:
    """``text`` wrapped to ``width_in`` inches at ``size`` points, a character taking ``em``
    of the size on average (0.53: matplotlib's DejaVu Sans; LaTeX's Latin Modern is narrower)."""
    return textwrap.wrap(text, max(20, int(width_in * 72 / (em * size))), break_on_hyphens=False) or [""]


def _line_h(size: float) -> float:
    return 1.35 * size / 72 / A4_INCHES[1]


def _wrapped(fig, x: float, y: float, text: str, size: float, width_in: float, **kw) -> float:
    """Draw ``text`` wrapped to ``width_in`` inches from (x, y) down; return the new y."""
    for line in _wrap(text, size, width_in):
        fig.text(x, y, line, fontsize=size, va="top", **kw)
        y -= _line_h(size)
    return y


def markdown_items(text: str, keep_marks: bool = False) -> list:
    """``[(text, bullet)]`` of a Markdown string: one item per paragraph (blank-line
    separated) or per ``- `` list item (continuation lines joined), emphasis removed
    (kept with ``keep_marks``)."""
    items = []
    for block in text.split("\n\n"):
        for i, chunk in enumerate(re.split(r"^- ", block.strip(), flags=re.M)):
            words = " ".join(chunk.split())
            if words:
                items.append((words if keep_marks else plain(words), i > 0))
    return items


def _paragraphs(blocks) -> list:
    """``[(head, [(text, bullet)])]`` from the page's ``(head, body)`` blocks: a list body is
    one bullet per item, a string body is Markdown (:func:`markdown_items`)."""
    return [(head, [(plain(t), True) for t in body] if isinstance(body, list) else markdown_items(body))
            for head, body in blocks]


def _text_height(paragraphs, size: float, width_in: float, em: float = 0.53) -> float:
    """Inches the text blocks take at font ``size`` (``em``: see :func:`_wrap`)."""
    lines = sum(len(_wrap(t, size, width_in - (0.15 if b else 0), em)) for _, items in paragraphs for t, b in items)
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


#: Height of a table's header row, in data rows (room above and below the bold titles).
HEADER_ROWS = 1.5


def column_widths(frame, size: float) -> list:
    """Inches each column of ``frame`` needs at font ``size`` (its widest cell or bold header,
    DejaVu Sans at ~0.6 em per character, plus padding)."""
    def chars(values):
        return max((len(str(v)) for v in values), default=1)

    return [(max(chars(frame[c]), 1.1 * len(str(c))) * 0.6 * size + 2 * size) / 72 for c in frame.columns]


def table_font_size(frame, width_in: float, largest: float = 6.5, smallest: float = 4.5) -> float:
    """The largest font size (points, ``largest`` down to ``smallest``) at which every column of
    ``frame`` fits ``width_in`` inches side by side, so no cell spills into its neighbour."""
    need = sum(column_widths(frame, 1.0))
    return max(smallest, min(largest, width_in / need)) if need else largest


def _draw_table(fig, frame, x: float, y: float, width: float, row_h: float, best_row=None,
                size: float = 6.5) -> float:
    """Draw ``frame`` (display strings) with its top-left corner at (x, y): the font at most
    ``size`` and small enough that every column fits (:func:`table_font_size`), columns as wide
    as their widest cell (the rest of the width shared out), the header row
    :data:`HEADER_ROWS` tall, ``best_row`` highlighted; return the y under it."""
    n = len(frame)
    height = row_h * (n + HEADER_ROWS)
    ax = fig.add_axes([x, y - height, width, height])
    ax.axis("off")
    width_in = width * fig.get_size_inches()[0]
    size = table_font_size(frame, width_in, largest=size)
    need = column_widths(frame, size)
    table = ax.table(cellText=frame.values.tolist(), colLabels=list(frame.columns), cellLoc="center",
                     bbox=[0, 0, 1, 1], colWidths=[w / sum(need) for w in need])
    table.auto_set_font_size(False)
    table.set_fontsize(size)
    for (row, _), cell in table.get_celld().items():
        cell.set_linewidth(0.3)
        if row == 0:
            cell.set_height(cell.get_height() * HEADER_ROWS)
            cell.set_facecolor("0.88")
            cell.get_text().set_fontweight("bold")
        elif best_row is not None and row - 1 == best_row:
            cell.set_facecolor("#e4f1e4")
            cell.get_text().set_fontweight("bold")
    return y - height


def _draw_tables(fig, page, m: float, y: float, text_w: float) -> float:
    H = A4_INCHES[1]
    n_rows = sum(len(v.frame) + HEADER_ROWS for v in page.tables if len(v.frame))
    row_h = min(0.18, 3.9 / max(n_rows, 1)) / H
    for i, view in enumerate(page.tables):
        fig.text(m, y, f"Table {i + 1} - {view.spec.title}", fontsize=8.5, fontweight="bold", va="top")
        y -= 0.19 / H
        if len(view.frame):
            y = _draw_table(fig, view.frame, m, y, 1 - 2 * m, row_h, view.best_row) - 0.04 / H
        under = [f"Rows: {view.note}." if view.note else "",
                 f"Highlighted: the best run by {page.spec.metric.title}." if view.best_row is not None else ""]
        if any(under):
            y = _wrapped(fig, m, y, " ".join(u for u in under if u), 6.5, text_w, style="italic", color="0.3")
        y -= 0.06 / H
    setup = getattr(page, "setup", None)
    if setup is not None and len(setup):
        fig.text(m, y, "Set-up (the recipes of the runs above, from their records)", fontsize=8, fontweight="bold",
                 va="top")
        width = min(1 - 2 * m, 0.09 * len(setup.columns))
        y = _draw_table(fig, setup, m, y - 0.18 / H, width, 0.15 / H, size=6) - 0.1 / H
    return y


def draw_page(page, engine_note: str = "matplotlib"):
    """The page as one A4 matplotlib Figure (not attached to pyplot): title, meta line,
    notes, tables, the set-up table, the figure rows, then the text blocks at the largest font
    size (8.5 pt down to 6 pt) that leaves the figures at least 1.6 inches (a long text goes
    down to 4.5 pt with the figures at 0.9 inches). When the text
    is short, the figures take the rest of the page (up to 7.4 inches, :func:`plan_rows`:
    the curves across the page and the notebook figures in a second row)."""
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
    size = next((s for s in (8.5, 8, 7.5, 7, 6.5, 6) if room - _text_height(paragraphs, s, text_w) >= 1.6),
                next((s for s in (5.5, 5.0) if room - _text_height(paragraphs, s, text_w) >= 0.9), 4.5))
    fig_h = min(7.4, max(0.9, room - _text_height(paragraphs, size, text_w)))
    fig_h = max(0.9, min(fig_h, rows_height(plan_rows(figure_panels(page), text_w, fig_h))))
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
