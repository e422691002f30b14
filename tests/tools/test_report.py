"""The one-page A4 reports (kdutils.tools.report) and the notebook runner (kdutils.tools.run_notebooks),
on fake records and tiny figures written under the test's KD_OUTPUT_ROOT."""
import itertools
import json

import matplotlib
import nbformat
import pytest
from pypdf import PdfReader

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kdutils.core import profiles, records
from kdutils.tools import (
    report,
    run_notebooks,  # noqa: E402
)

PROFILE = "smoke"
_CLOCK = itertools.count()  # distinct creation times: tables list runs in creation order
HEADERS = ("run", "params", "FLOPs", "best top-1 %", "best top-5 %", "epochs", "train time")


def fake_run(part, run, top1, flops=5.6e8, n_params=11_200_000, epochs=2, status="complete", label=None,
             extra=None, **params):
    """A finished training record as kdutils.core.train.fit writes it (history, best, time);
    ``extra`` adds top-level fields (e.g. part 4's ``final``)."""
    rec = records.new_record(part, run, PROFILE, params=params, device="cpu", epochs=epochs,
                             n_params=n_params, flops=flops, **({"label": label} if label else {}), **(extra or {}))
    rec.update(status=status, created=f"2026-01-01T00:{next(_CLOCK):05d}", epochs_done=epochs,
               train_seconds=30.0 * epochs,
               history=[{"epoch": e + 1, "test_top1": top1 * (e + 1) / epochs, "test_top5": top1 + 20}
                        for e in range(epochs)],
               best={"epoch": epochs, "test_top1": top1, "test_top5": top1 + 20})
    records.save_record(rec)
    return rec


def tiny_figure(name):
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, 1])
    path = profiles.figures_dir() / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=50)
    plt.close(fig)
    return path


@pytest.fixture
def part1_records():
    runs = [("ResNet-18", 30.0, 5.6e8), ("CBAM-ResNet-18", 31.0, 5.7e8), ("SE-WRN-28-8", 36.5, 1.05e10)]
    for label, top1, flops in runs:
        fake_run("part1", f"{label.lower()}_w0.25", top1, flops=flops, label=label)
    fake_run("part1", "unfinished", 90.0, status="running")


def pdf_text_and_boxes(path):
    reader = PdfReader(str(path))
    boxes = [(float(p.mediabox.width), float(p.mediabox.height)) for p in reader.pages]
    return "\n".join(p.extract_text() for p in reader.pages), boxes


def test_matplotlib_engine_writes_one_a4_page_per_part(part1_records):
    entries = report.export_reports(PROFILE, parts=["1", "part2"], engine="matplotlib", log=None)
    assert [e["pdf"] for e in entries] == ["part1_smoke.pdf", "part2_smoke.pdf"]
    for entry in entries:
        text, boxes = pdf_text_and_boxes(profiles.reports_dir() / entry["pdf"])
        assert len(boxes) == 1, "one page per part report"
        assert boxes[0] == pytest.approx((595, 842), abs=1), "A4 portrait"
        assert entry["engine"] == "matplotlib" and entry["pages"] == 1

    text, _ = pdf_text_and_boxes(profiles.reports_dir() / "part1_smoke.pdf")
    assert all(h in text for h in HEADERS), text
    assert "Part 1" in text and "SE-WRN-28-8" in text and "profile smoke" in text

    empty, _ = pdf_text_and_boxes(profiles.reports_dir() / "part2_smoke.pdf")
    assert "Not run yet" in empty and "part2_cifar100_kd.ipynb" in empty

    manifest = json.loads((profiles.reports_dir() / "manifest.json").read_text())
    assert manifest["reports"]["part1_smoke.pdf"]["engine"] == "matplotlib"
    assert manifest["reports"]["part1_smoke.pdf"]["records"] == 3
    report.export_reports(PROFILE, parts=["3"], engine="matplotlib", log=None)
    merged = json.loads((profiles.reports_dir() / "manifest.json").read_text())["reports"]
    assert set(merged) == {"part1_smoke.pdf", "part2_smoke.pdf", "part3_smoke.pdf"}


def test_page_is_computed_from_the_records(part1_records):
    page = report.build_page("part1", PROFILE)
    (table,) = page.tables
    assert list(table.frame.columns) == list(HEADERS)  # no width / last top-1 columns: no record has them
    assert table.frame["run"].tolist() == ["ResNet-18", "CBAM-ResNet-18", "SE-WRN-28-8"]
    assert table.frame.loc[2, "FLOPs"] == "10.50G" and table.frame.loc[0, "params"] == "11.20M"
    assert table.best_row == 2
    assert "unfinished" in table.note
    assert page.proposal_head == "Proposal" and "+6.5 points" in page.proposal and "ResNet-18" in page.proposal
    assert "19x the FLOPs" in " ".join(page.findings)  # best run over the baseline (resnet-18_w0.25)
    assert "Smoke profile" in page.caveat
    assert page.figures == [] and page.notes == []  # part 1 places no notebook figure, asks for none


def test_figures_are_placed_when_the_notebook_saved_them():
    fake_run("part3", "student_lam0", 50.0)
    assert any("No saved figure" in n for n in report.build_page("part3", PROFILE).notes)
    tiny_figure("part3_search_scatter")
    tiny_figure("part3_heatmap")
    page = report.build_page("part3", PROFILE)
    assert [f.name for f in page.figures] == ["part3_heatmap.png", "part3_search_scatter.png"]
    assert not any("No saved figure" in n for n in page.notes)


def test_large_tables_keep_the_baseline_and_the_best_runs():
    fake_run("part3", "teacher", 80.0, flops=5.6e8)
    fake_run("part3", "student_lam0", 50.0, flops=2e7, lam=0.0)
    for i in range(14):
        fake_run("part3", f"KD{i}_T{i}_lam0.5", 55.0 + i, flops=2e7, T=i, lam=0.5)
    for i in range(9):
        fake_run("part3_search", f"r1_{i:02d}_T{i}_lam1", 40.0 + i, T=i, lam=1.0)
    page = report.build_page("part3", PROFILE)
    first, search = page.tables
    assert len(first.frame) == first.spec.max_rows == 12
    assert first.frame["run"].tolist()[:2] == ["teacher", "student_lam0"]  # creation order
    assert "KD13_T13_lam0.5" in first.frame["run"].tolist() and "KD0_T0_lam0.5" not in first.frame["run"].tolist()
    assert "the baseline and the best of 16 runs" in first.note
    assert {"T", "lambda"} <= set(first.frame.columns)
    assert first.frame["run"][first.best_row] == "KD13_T13_lam0.5"  # the teacher does not compete
    assert "T=13, lambda=0.5" in page.proposal and "student_lam0" in page.proposal
    assert search.frame["run"].tolist()[0] == "r1_08_T8_lam1"  # best first
    assert len(search.frame) == 6 and "the 6 best of 9 runs" in search.note


def test_ties_give_an_opinion_not_a_proposal():
    common = dict(method="KD", teacher="-")
    fake_run("part2", "task1_teacher_big", 60.0, **{**common, "task": "Task 1", "student": "big"})
    fake_run("part2", "task1_student_small", 40.0, **{**common, "task": "Task 1", "student": "small"})
    fake_run("part2", "task2_big-to-small", 40.5, **{**common, "task": "Task 2", "student": "small"})
    page = report.build_page("part2", PROFILE)
    assert page.proposal_head == "Opinion" and "Task 1 KD (small)" in page.proposal
    assert page.findings[0].startswith("Best by best top-1 %: Task 2 KD (small)")  # the teacher does not compete


def test_format_value():
    assert report.format_value(71.234, "pct") == "71.2"
    assert report.format_value(95_300, "count") == "95.3k"
    assert report.format_value(5.6e8, "flops") == "0.56G"
    assert report.format_value(3.1e7, "flops") == "31.0M"
    assert report.format_value(95, "seconds") == "1.6 min"
    assert report.format_value(None, "pct") == "-"
    with pytest.raises(ValueError, match="kind"):
        report.format_value(1, "furlongs")
    with pytest.raises(ValueError, match="unknown part 9"):
        report.normalize_part(9)


def test_readme_block(part1_records, tmp_path):
    text = report.readme_tables(PROFILE, parts=["1", "2"])
    assert "| run" in text and "SE-WRN-28-8" in text and "profile smoke" in text
    colab = "https://colab.research.google.com/github/kd-course/kd-course/blob/main/notebooks/"
    assert f"({colab}part1_cifar100_architectures.ipynb)" in text
    assert "Not run yet" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.README_START}\nold\n{report.README_END}\noutro\n")
    report.update_readme(text, readme)
    new = readme.read_text()
    assert new.startswith("intro\n") and new.endswith("outro\n") and "old" not in new and "SE-WRN-28-8" in new
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="results:start"):
        report.update_readme(text, readme)


def test_engine_choice_without_latex(part1_records, monkeypatch, capsys):
    monkeypatch.setattr(report.shutil, "which", lambda tool: None)
    assert report.main(["--profile", PROFILE, "--parts", "1", "--engine", "latex"]) == 2
    assert "texlive-xetex" in capsys.readouterr().err
    assert report.main(["--profile", PROFILE, "--parts", "1"]) == 0
    out = capsys.readouterr().out
    assert "engine=matplotlib" in out and "not installed" in out


@pytest.mark.skipif(not report.latex_available(), reason="xelatex and pandoc are not installed")
def test_latex_engine_writes_one_a4_page(part1_records):
    (entry,) = report.export_reports(PROFILE, parts=["1"], engine="latex", log=None)
    text, boxes = pdf_text_and_boxes(profiles.reports_dir() / entry["pdf"])
    assert entry["engine"] == "latex"
    assert len(boxes) == 1 and boxes[0] == pytest.approx((595, 842), abs=1)
    assert all(h in text for h in ("FLOPs", "best top-1", "train time")), text
    assert "import" not in text  # code is hidden


# --------------------------------------------------------------------------- run_notebooks
def _notebook(path, body):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def test_run_notebooks_goes_on_past_a_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_OUTPUT_ROOT", str(tmp_path / "out"))  # inherited by the child processes
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "part1_fails.ipynb", "raise RuntimeError('part one broke')")
    _notebook(folder / "part2_works.ipynb",
              "import os\nassert os.environ['KD_HEADLESS'] == '1' and profile == 'smoke'\n"
              "open('ran.txt', 'w').write(os.getcwd())")
    _notebook(folder / "report.ipynb", "raise AssertionError('the report notebook is not a part')")

    assert [p.name for p in run_notebooks.part_notebooks(["part2"], folder)] == ["part2_works.ipynb"]
    with pytest.raises(ValueError, match="part5"):
        run_notebooks.part_notebooks(["part5"], folder)

    summary = run_notebooks.run_all("smoke", folder=folder, log=None)
    assert [(e["run"], e["status"]) for e in summary] == [("part1_fails", "failed"), ("part2_works", "ok")]
    runs = tmp_path / "out" / "runs" / "smoke"
    assert (runs / "part2_works.ipynb").is_file() and (runs / "part1_fails.ipynb").is_file()
    assert (folder / "ran.txt").read_text() == str(folder)  # the notebook's folder is the cwd
    failure = json.loads((runs / "failures" / "part1_fails.json").read_text())
    assert "part one broke" in failure["error_tail"] and failure["profile"] == "smoke"
    assert json.loads((runs / "summary.json").read_text())["notebooks"][1]["status"] == "ok"


def test_run_notebooks_cli_exit_codes(monkeypatch, tmp_path):
    monkeypatch.setattr(run_notebooks, "NOTEBOOKS_DIR", tmp_path)
    assert run_notebooks.main(["--profile", "smoke"]) == 2  # no part notebooks there
    assert run_notebooks.main(["--profile", "nonsense"]) == 2
    calls = []

    def one_failure(*args, **kwargs):
        calls.append(args)
        return [{"run": "part1", "status": "failed"}]

    monkeypatch.setattr(run_notebooks, "run_all", one_failure)
    assert run_notebooks.main(["--profile", "smoke", "--only", "part1"]) == 1
    assert calls == [("smoke", ["part1"])]



def test_opinion_when_the_reference_stays_best_and_no_argument_without_reference():
    fake_run("part1", "resnet-18_w0.25", 40.0, label="ResNet-18")
    fake_run("part1", "cbam-resnet-18_w0.25", 36.0, label="CBAM-ResNet-18")
    page = report.build_page("part1", PROFILE)
    assert page.proposal_head == "Opinion"
    assert page.proposal.startswith("Keep ResNet-18: none of the 1 alternative(s)")
    assert "4.0 points behind" in page.proposal
    # part 4's reference run (fine-tuning) has not run yet: no comparison, no proposal
    fake_run("part4", "feature_extraction", 10.0, extra={"final": {"new_test_top1": 10.0}})
    page = report.build_page("part4", PROFILE)
    assert page.proposal == "" and "no comparison" in " ".join(page.findings)
