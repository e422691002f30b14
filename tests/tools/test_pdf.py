"""The PDF engines behind kdutils.tools.pdf.write_pdf: the choice of engine, the fallback from
LaTeX to matplotlib, and the matplotlib page (one A4 page whatever the length of the text)."""
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
