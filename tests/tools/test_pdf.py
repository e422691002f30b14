"""The PDF engines behind kdutils.tools.pdf.write_pdf: the choice of engine, the fallback from
LaTeX to matplotlib, the matplotlib page (one A4 page whatever the length of the text, no
word printed over another: checked from the PDF's word positions), the LaTeX page's pieces and
layout, the figure rows."""
import shutil
import subprocess
from dataclasses import dataclass, field

import pandas as pd
import pytest
from pypdf import PdfReader

from kdutils.core.report_spec import LABEL, TOP1, PartSpec, Table
from kdutils.tools import pdf

SPEC = PartSpec(part="part9", title="Part 9 - a test page", notebooks=("part9_test.ipynb",), data="none",
                tables=(Table("runs", "part9", (LABEL, TOP1)),), opinion_title="Opinion")


@dataclass
class View:
    spec: Table
    frame: object
    records: list
    note: str = ""
    best_row: int = 0


@dataclass
class FakePage:
    """What the engines read of a report page (kdutils.tools.report.Page)."""

    findings: list
    opinion: str
    spec: PartSpec = SPEC
    profile: str = "smoke"
    title: str = SPEC.title
    meta: str = "profile smoke | device CPU"
    sources: str = "records: results/smoke/part9/"
    notes: list = field(default_factory=list)
    figures: list = field(default_factory=list)
    tables: list = field(default_factory=list)
    setup: object = None

    def text_blocks(self):
        return [(h, b) for h, b in (("Findings", self.findings), ("Opinion", self.opinion)) if b]


def page(findings=("A **bold** finding.",), opinion="**My view.** Short.\n\n- first point\n- second point"):
    rows = [{"label": "a", "best": {"test_top1": 50.0},
             "history": [{"epoch": 1, "test_top1": 40.0}, {"epoch": 2, "test_top1": 50.0}]}]
    frame = pd.DataFrame({"run": ["a"], "best top-1 %": ["50.0"]})
    return FakePage(list(findings), opinion, tables=[View(SPEC.tables[0], frame, rows)])


def text_of(path):
    reader = PdfReader(str(path))
    return len(reader.pages), " ".join(" ".join(p.extract_text().split()) for p in reader.pages)


def test_choose_engine(monkeypatch):
    monkeypatch.setattr(pdf, "missing_latex_tools", lambda: ["xelatex", "pandoc"])
    assert pdf.choose_engine("auto") == ("matplotlib", "xelatex/pandoc not installed: pure-Python fallback")
    assert pdf.choose_engine("matplotlib") == ("matplotlib", "--engine matplotlib")
    with pytest.raises(RuntimeError, match="texlive-xetex"):
        pdf.choose_engine("latex")
    with pytest.raises(ValueError, match="engine"):
        pdf.choose_engine("word")
    monkeypatch.setattr(pdf, "missing_latex_tools", lambda: [])
    assert pdf.choose_engine("auto") == ("latex", "xelatex and pandoc found")


def test_auto_falls_back_to_matplotlib_when_latex_fails(monkeypatch, tmp_path):
    monkeypatch.setattr(pdf, "missing_latex_tools", lambda: [])

    def failing(part, profile, path, timeout=600):
        raise RuntimeError("jupyter nbconvert --to pdf failed for part9 (exit 1):\n! LaTeX Error: boom")

    monkeypatch.setattr(pdf, "write_pdf_latex", failing)
    used, reason = pdf.write_pdf(page(), tmp_path / "p.pdf", "auto")
    assert used == "matplotlib" and reason == "LaTeX export failed (! LaTeX Error: boom): pure-Python fallback"
    assert text_of(tmp_path / "p.pdf")[0] == 1
    with pytest.raises(RuntimeError, match="boom"):
        pdf.write_pdf(page(), tmp_path / "q.pdf", "latex")  # asked for LaTeX: no silent fallback


def test_matplotlib_page_prints_the_text_without_markdown_marks(tmp_path):
    pdf.write_pdf(page(), tmp_path / "p.pdf", "matplotlib")
    pages, text = text_of(tmp_path / "p.pdf")
    assert pages == 1
    assert "A bold finding." in text and "My view. Short." in text and "first point" in text
    assert "**" not in text and "Findings" in text and "Opinion" in text and "Part 9 - a test page" in text


def test_long_text_shrinks_to_stay_on_one_page(tmp_path):
    sentence = "This sentence stands for one of many measured findings of a long part, each a line or two. "
    long = page(findings=[sentence * 2] * 14, opinion="\n\n".join([sentence * 4] * 4))
    pdf.write_pdf_matplotlib(long, tmp_path / "long.pdf")
    pages, text = text_of(tmp_path / "long.pdf")
    assert pages == 1 and text.count("stands for one of many") == 14 * 2 + 4 * 4


def test_plain_removes_emphasis_only():
    assert pdf.plain("**Bold** and *italic* and `code`, 2 * 3 = 6, a*b") == "Bold and italic and code, 2 * 3 = 6, a*b"


def test_markdown_items_split_paragraphs_and_list_items():
    text = "**Head.** one\nline\n\n- first\n  continued\n- second\n\nlast *word*"
    assert pdf.markdown_items(text) == [("Head. one line", False), ("first continued", True), ("second", True),
                                        ("last word", False)]


# --------------------------------------------------------------------------- checking the printed page
def _pdf_with_texts(path, texts):
    """A one-page A4 PDF with ``(x, y, text)`` drawn at figure fractions (searchable text)."""
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=pdf.A4_INCHES)
    for x, y, text in texts:
        fig.text(x, y, text, fontsize=10)
    with matplotlib.rc_context({"pdf.fonttype": 42}):
        fig.savefig(path, format="pdf")
    return path


def test_layout_problems_finds_overlapping_and_clipped_words(tmp_path):
    pytest.importorskip("pdfplumber")
    clean = _pdf_with_texts(tmp_path / "clean.pdf", [(0.1, 0.9, "trained"), (0.3, 0.9, "teacher"),
                                                     (0.1, 0.8, "below")])
    assert pdf.layout_problems(clean) == []
    clash = _pdf_with_texts(tmp_path / "clash.pdf", [(0.1, 0.9, "trained"), (0.11, 0.9, "teacher"),
                                                     (0.97, 0.5, "clipped-at-the-edge")])
    problems = pdf.layout_problems(clash)
    assert any("overlap at" in p for p in problems), problems
    assert any("outside the page" in p for p in problems), problems


def wide_page(n_findings=6):
    """A page like part 2's: long labels in several text columns, a set-up table, notes."""
    cols = ["task", "method", "trained", "teacher", "params", "FLOPs", "best top-1 %", "best top-5 %", "epochs",
            "train time"]
    rows = [["Task 1", "CE + label smoothing (recipe)", "wrn_40_2x0.25", "-", "144.5k", "41.1M", "20.5", "70.0",
             "1", "12 s"],
            ["Task 4", "KD", "wrn_40_2x0.25", "wrn_16_2x0.25 (task1_student)", "144.5k", "41.1M", "10.0", "23.5",
             "1", "14 s"]] * 4
    frame = pd.DataFrame(rows, columns=cols)
    base = page(findings=["A measured finding with **bold** names, 50% and a_b, long enough to wrap. " * 2]
                * n_findings)
    base.tables[0].frame = frame
    base.setup = pd.DataFrame([[8, "sgd", "0.05", "cosine", "0.0005", "1", "off", "false", "0"]],
                              columns=["runs", "optimizer", "lr", "schedule", "weight decay", "epochs", "precision",
                                       "channels-last", "seed"])
    return base


def test_matplotlib_page_prints_every_word_legibly(tmp_path):
    pytest.importorskip("pdfplumber")
    path = pdf.write_pdf_matplotlib(wide_page(), tmp_path / "wide.pdf")
    assert pdf.layout_problems(path) == []
    pages, text = text_of(path)
    assert "wrn_16_2x0.25 (task1_student)" in text and "Set-up" in text and "weight decay" in text
    if shutil.which("pdftoppm"):  # the page image: A4 at 50 dpi, ink on it
        subprocess.run(["pdftoppm", "-r", "50", "-png", "-singlefile", str(path), str(tmp_path / "wide")], check=True)
        import matplotlib.image as mpimg

        image = mpimg.imread(tmp_path / "wide.png")
        assert image.shape[:2] == (585, 414) and image.min() < 0.5


def test_latex_table_escapes_aligns_and_fits_the_width():
    frame = pd.DataFrame({"run": ["a_b", "50% c"], "best top-1 %": ["61.5", "30.0"], "time": ["5 s", "1.6 min"]})
    tex = pdf.latex_table(frame, best_row=1)
    assert tex.startswith(r"\fittable{\begin{tabular}{lrr}") and tex.endswith(r"\end{tabular}}")
    assert r"a\_b" in tex and r"\textbf{50\% c} & \textbf{30.0}" in tex and r"\textbf{best top-1 \%}" in tex
    assert pdf.latex_inline("**Bold** *it* `x_y` & 5%") == r"\textbf{Bold} \emph{it} \texttt{x\_y} \& 5\%"


def test_latex_table_right_aligns_means_over_seeds():
    frame = pd.DataFrame({"run": ["kd", "teacher"], "seeds": ["3", "1"], "best top-1 %": ["42.0 ± 2.0", "60.0"],
                          "note": ["a ± b", "-"]})
    assert pdf.latex_table(frame).startswith(r"\fittable{\begin{tabular}{lrrl}")


def test_latex_page_and_text_blocks():
    base = wide_page()
    head = pdf.page_latex(base)
    assert head.startswith(r"{\Large\bfseries Part 9 - a test page") and r"\section" not in head  # no numbering
    assert head.count(r"\fittable{") == 2 and "Set-up" in head
    text = pdf.text_latex(base, r"\footnotesize")
    assert text.startswith(r"{\kdtextsize{\footnotesize}") and r"\textbf{Findings.}" in text and r"\textbf{Opinion.}" in text
    assert text.count(r"\item ") == 6 + 2 and text.count(r"\begin{itemize}") == 2
    assert r"\textbf{bold}" in text and r"50\%" in text


def test_latex_layout_shrinks_the_text_before_the_figures():
    size_short, fig_short = pdf.latex_layout(wide_page(n_findings=2))
    size_long, fig_long = pdf.latex_layout(wide_page(n_findings=14))
    sizes = [command for command, _ in pdf.LATEX_TEXT_SIZES]
    assert size_short == sizes[0] and sizes.index(size_long) > 0
    assert 2.0 <= fig_long <= fig_short <= 6.5


def test_plan_rows_keeps_aspect_ratios(tmp_path):
    import matplotlib.pyplot as plt

    wide = tmp_path / "wide.png"
    fig = plt.figure(figsize=(11, 4))
    fig.savefig(wide, dpi=20)
    plt.close(fig)
    (row,) = pdf.plan_rows(["curves"], 7.0, 5.0)
    assert row == (["curves"], pytest.approx(7.0 / pdf.CURVES_ASPECT))  # no taller than it needs
    plan = pdf.plan_rows(["curves", wide], 7.0, 4.5)
    assert [panels for panels, _ in plan] == [["curves"], [wide]]  # two rows cover more than one
    assert pdf.rows_height(plan) <= 4.5 + 1e-9
    assert len(pdf.plan_rows(["curves", wide], 7.0, 1.5)) == 1  # too little height for two rows


def test_the_curves_legend_stays_inside_its_axes(tmp_path):
    """Long labels on a narrow curves panel: the legend shrinks until it fits the axes, or goes
    (the title then says the lines are Table 1's rows), never over the tick labels beside it."""
    from matplotlib.figure import Figure

    def axes(width_in, height_in):
        fig = Figure(figsize=(width_in + 1, height_in + 1))
        ax = fig.add_axes([0.5 / (width_in + 1), 0.5 / (height_in + 1), width_in / (width_in + 1),
                           height_in / (height_in + 1)])
        for i in range(8):
            ax.plot([1, 2], [i, i + 1], label=f"Extra CE without label smoothing, row {i} (small)")
        ax.legend()
        return fig, ax

    fig, ax = axes(2.6, 1.3)
    assert pdf._fit_legend(ax, 8, wide=True, short_panel=True)
    renderer = fig.canvas.get_renderer()
    box, room = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert box.width <= room.width and box.height <= room.height
    fig, ax = axes(1.0, 0.6)
    assert not pdf._fit_legend(ax, 8, wide=True, short_panel=True) and ax.get_legend() is None
