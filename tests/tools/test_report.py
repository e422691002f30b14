"""The one-page A4 reports (kdutils.tools.report), on fake records and tiny figures written under
the test's KD_OUTPUT_ROOT: pages built from the records and the parts' own specs, findings
and opinions (the same text the notebooks display), PDFs, the README block, the command line."""
import itertools
import json

import matplotlib
import pytest
from pypdf import PdfReader

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kdutils.core import findings as F  # noqa: E402
from kdutils.core import profiles, records  # noqa: E402
from kdutils.models.cifar_resnet import ABLATION_PATH  # noqa: E402
from kdutils.parts import part1, part2, part3, part4  # noqa: E402
from kdutils.tools import pdf, report  # noqa: E402

PROFILE = "smoke"
_CLOCK = itertools.count()  # distinct creation times: tables list runs in creation order
HEADERS = ("run", "width", "params", "FLOPs", "best top-1 %", "best top-5 %", "last top-1 %", "epochs",
           "train time")


def fake_run(part, run, top1, flops=5.6e8, n_params=11_200_000, epochs=2, status="complete", label=None,
             extra=None, **params):
    """A finished training record as kdutils.core.train.fit writes it (history, best, last, time);
    ``extra`` adds top-level fields (e.g. part 4's ``final``)."""
    rec = records.new_record(part, run, PROFILE, params=params, device="cpu", epochs=epochs,
                             n_params=n_params, flops=flops, **({"label": label} if label else {}), **(extra or {}))
    rec.update(status=status, created=f"2026-01-01T00:{next(_CLOCK):05d}", epochs_done=epochs,
               train_seconds=30.0 * epochs,
               history=[{"epoch": e + 1, "test_top1": top1 * (e + 1) / epochs, "test_top5": top1 + 20}
                        for e in range(epochs)],
               best={"epoch": epochs, "test_top1": top1, "test_top5": top1 + 20},
               last={"epoch": epochs, "test_top1": top1, "test_top5": top1 + 20})
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


def part1_run(name, top1, flops):
    entry = next(e for e in ABLATION_PATH if e["name"] == name)
    return fake_run("part1", part1.run_name(entry, 0.25), top1, flops=flops, label=name,
                    extra={"width_mult": 0.25, "n_test": 1000, "change": entry["change"]})


@pytest.fixture
def part1_records():
    part1_run("ResNet-18", 30.0, 5.6e8)
    part1_run("CBAM-ResNet-18", 31.0, 5.7e8)
    part1_run("SE-WRN-28-8 (proposal)", 36.5, 1.05e10)
    fake_run("part1", "unfinished", 90.0, status="running")


@pytest.fixture
def part2_records():
    """Task 1 teacher and student and task 2, as part 2's experiments write them (quick-like:
    10 test images per class)."""
    plan = part2.part2_plan("big", "small", 0.9, 4.0)
    for key, top1, n in (("task1_teacher", 60.0, 5000), ("task1_student", 40.0, 1000), ("task2", 40.5, 1000)):
        exp = plan[key]
        fake_run("part2", exp.name, top1, n_params=n, extra={"framework": {"test_per_class": 10}},
                 **exp.run(PROFILE).params)


def pdf_text_and_boxes(path):
    reader = PdfReader(str(path))
    boxes = [(float(p.mediabox.width), float(p.mediabox.height)) for p in reader.pages]
    return " ".join(" ".join(p.extract_text().split()) for p in reader.pages), boxes


def test_parts_are_the_part_modules():
    assert report.PARTS == ("part1", "part2", "part3", "part4", "part5")
    assert report.normalize_part(3) == report.normalize_part("part3") == "part3"
    assert report.spec_of("2") is part2.REPORT
    with pytest.raises(ValueError, match="unknown part 9"):
        report.normalize_part(9)


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
    assert "Proposal" in text and "A pre-activation wide ResNet" in text  # the notebook's argument
    assert "agrees with the proposal's argument" in text  # the notebook's generated findings

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
    assert list(table.frame.columns) == list(HEADERS)
    assert table.frame["run"].tolist() == ["ResNet-18", "CBAM-ResNet-18", "SE-WRN-28-8 (proposal)"]
    assert table.frame.loc[2, "FLOPs"] == "10.50G" and table.frame.loc[0, "params"] == "11.20M"
    assert table.frame.loc[0, "width"] == "0.25"
    assert table.best_row == 2
    assert "unfinished" in table.note
    assert "Smoke profile" in page.caveat
    assert page.figures == [] and page.notes == []  # part 1 places no notebook figure, asks for none


def test_the_text_is_the_parts_own(part1_records):
    """The findings and the opinion on the page are what the notebook displays: the part's
    findings(records) and OPINION, on all the part's records."""
    page = report.build_page("part1", PROFILE)
    assert page.findings == part1.findings(records.load_records("part1", PROFILE))
    assert page.opinion == part1.OPINION
    assert [head for head, _ in page.text_blocks()] == ["Findings", "Proposal", "Caveat"]
    text = " ".join(page.findings)
    noise = F.noise_band((30.0 + 36.5) / 2, 1000)
    assert f"SE-WRN-28-8 (proposal) is ahead of ResNet-18 by 6.50 points, beyond the noise band ±{noise:.2f}" in text
    assert "This run's measurement agrees with the proposal's argument." in page.findings
    assert "+1.00 points, inside the" in text  # ResNet-18 -> CBAM-ResNet-18
    markdown = report.text_markdown(page)
    assert markdown.startswith("**Findings.**\n\n- ") and f"**Proposal.** {part1.OPINION}" in markdown
    assert not report.build_page("part1", PROFILE, text=False).findings  # the README needs no text


def test_part2_page_highlights_the_best_student_and_prints_the_kd_findings(part2_records):
    page = report.build_page("part2", PROFILE)
    (table,) = page.tables
    assert table.frame["task"].tolist() == ["Task 1", "Task 1", "Task 2"]
    assert table.frame["trained"].tolist() == ["big", "small", "small"]
    assert table.records[2]["label"] == "Task 2 KD (small)"  # the spec's label template (curves)
    assert table.best_row == 2  # the teacher (60 %) does not compete
    assert page.findings == part2.findings(records.load_records("part2", PROFILE))
    noise = F.noise_band(50.0, 1000)  # 10 test images per class x 100 classes
    assert f"+0.50 points over its own baseline (40.00 (1 seed); inside the ±{noise:.2f}-point noise band)" in " ".join(page.findings)
    assert [head for head, _ in page.text_blocks()] == ["Findings", "Opinion on KD", "Caveat"]
    assert page.opinion == part2.OPINION

    (entry,) = report.export_reports(PROFILE, parts=["2"], engine="matplotlib", log=None)
    text, boxes = pdf_text_and_boxes(profiles.reports_dir() / entry["pdf"])
    assert len(boxes) == 1 and "Opinion on KD" in text and "My reading. KD works, but mostly not" in text
    assert f"inside the ±{noise:.2f}-point noise band" in text


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
        fake_run("part3_search", f"r1_{i:02d}_T{i}_lam1", 48.0 - i, T=i, lam=1.0,
                 extra={"val": {"top1": 30.0 + i}})  # ranked on held-out training images, not on a test number
    fake_run("part3_search", "final_no_kd", 45.0, T=1, lam=0.0)
    fake_run("part3_search", "final_T8_lam1", 47.0, T=8, lam=1.0)
    page = report.build_page("part3", PROFILE)
    first, search, finals = page.tables
    assert len(first.frame) == first.spec.max_rows == 12
    assert first.frame["run"].tolist()[:2] == ["teacher", "student_lam0"]  # creation order
    assert "KD13_T13_lam0.5" in first.frame["run"].tolist() and "KD0_T0_lam0.5" not in first.frame["run"].tolist()
    assert "the baseline and the best of 16 runs" in first.note
    assert {"T", "lambda"} <= set(first.frame.columns)
    assert first.frame["run"][first.best_row] == "KD13_T13_lam0.5"  # the teacher does not compete
    assert search.frame["run"].tolist()[0] == "r1_08_T8_lam1"  # best first
    assert len(search.frame) == 4 and "the 4 best of 9 runs by val top-1" in search.note
    assert "best top-1 %" not in search.frame.columns  # trials never see the test set
    assert finals.frame["run"].tolist() == ["final_no_kd", "final_T8_lam1"] and finals.best_row is None
    assert search.best_row is None  # only the first table is highlighted

    everything = records.load_records("part3", PROFILE) + records.load_records("part3_search", PROFILE)
    assert page.findings == part3.findings(everything)  # every run, not only the rows shown
    text = " ".join(page.findings)
    noise = F.noise_band((68.0 + 50.0) / 2, part3.n_test_images(PROFILE))
    assert "KD13_T13_lam0.5 is ahead of the student without KD by 18.00 points" in text
    assert f"noise band ±{noise:.2f}" in text and "KD0_T0_lam0.5 is ahead" in text
    assert "the best of 9 trials, ranked on images held out from training, had T=8, lambda=1 (38.00% validation" in text
    assert page.opinion == part3.OPINION and [h for h, _ in page.text_blocks()][:2] == ["Findings", "Reading"]


def test_a_part_without_text_gets_tables_only_and_a_broken_generator_a_note(monkeypatch):
    fake_run("part4", "feature_extraction", 10.0, extra={"final": {"new_test_top1": 10.0, "old_test_top1": 50.0}})
    page = report.build_page("part4", PROFILE)
    assert page.findings == part4.findings(records.load_records("part4", PROFILE))
    assert "New task (faces test top-1): feature extraction 10.00 (1 seed)." in page.findings
    assert [head for head, _ in page.text_blocks()] == ["Findings", "Reading the results", "Caveat"]

    monkeypatch.delattr(part4, "findings")
    monkeypatch.delattr(part4, "OPINION")
    page = report.build_page("part4", PROFILE)
    assert page.findings == [] and page.opinion == "" and [h for h, _ in page.text_blocks()] == ["Caveat"]

    def broken(recs):
        raise KeyError("n_val")

    monkeypatch.setattr(part4, "findings", broken, raising=False)
    page = report.build_page("part4", PROFILE)
    assert page.findings == [] and any("part4.findings failed (KeyError" in n for n in page.notes)


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
    assert new.startswith("intro\n") and new.endswith("outro\n") and "\nold\n" not in new and "SE-WRN-28-8" in new
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="results:start"):
        report.update_readme(text, readme)


def test_engine_choice_without_latex(part1_records, monkeypatch, capsys):
    monkeypatch.setattr(pdf, "missing_latex_tools", lambda: ["xelatex", "pandoc"])
    assert report.main(["--profile", PROFILE, "--parts", "1", "--engine", "latex"]) == 2
    assert "texlive-xetex" in capsys.readouterr().err
    assert report.main(["--profile", PROFILE, "--parts", "1"]) == 0
    out = capsys.readouterr().out
    assert "engine=matplotlib" in out and "not installed" in out
    assert report.main(["--profile", PROFILE, "--parts", "1", "--readme-tables"]) == 0
    assert "SE-WRN-28-8" in capsys.readouterr().out


@pytest.mark.skipif(not pdf.latex_available(), reason="xelatex and pandoc are not installed")
def test_latex_engine_writes_one_a4_page(part1_records):
    (entry,) = report.export_reports(PROFILE, parts=["1"], engine="latex", log=None)
    text, boxes = pdf_text_and_boxes(profiles.reports_dir() / entry["pdf"])
    assert entry["engine"] == "latex"
    assert len(boxes) == 1 and boxes[0] == pytest.approx((595, 842), abs=1)
    assert all(h in text for h in ("FLOPs", "best top-1", "train time")), text
    assert "import" not in text  # code is hidden


def test_report_notebook_checks_its_parameters_before_any_work():
    """Issue 13: every notebook parameter is checked in the cell after ``parameters``."""
    from tests.helpers import run_resolve_cell

    with pytest.raises(ValueError, match=r"figure_format = 'svg' \(str\): not one of the choices; allowed: one of 'png', 'pdf'"):
        run_resolve_cell("report.ipynb", figure_format="svg")
    with pytest.raises(ValueError, match=r"profile = 'fast'"):
        run_resolve_cell("report.ipynb", profile="fast")


# --------------------------------------------------------------------------- issue 16: what a reader can trust
RECIPE = {"optimizer": "sgd", "lr": 0.05, "schedule": "cosine", "weight_decay": 5e-4, "epochs": 2}


def test_meta_line_says_what_a_reader_needs_to_trust_the_page(part1_records):
    page = report.build_page("part1", PROFILE)
    for piece in ("profile smoke", "device CPU", "data CIFAR-100: generated images", "epochs 2",
                  "seeds not recorded", "3 run(s)", "smoke profile: not the assignment's result"):
        assert piece in page.meta, (piece, page.meta)
    assert f"CPU {records.cpu_model()} (" in page.meta  # the CPU model beside every wall time
    assert page.setup is None  # these records carry no recipe
    for name, seed in (("SE-ResNet-18", 0), ("SE-WRN-16-8", 1)):
        entry = next(e for e in ABLATION_PATH if e["name"] == name)
        fake_run("part1", part1.run_name(entry, 0.25), 33.0, label=name,
                 extra={"width_mult": 0.25, "n_test": 1000, "recipe": RECIPE, "seed": seed, "amp": "bfloat16"})
    page = report.build_page("part1", PROFILE)
    assert "seeds 0-1" in page.meta and "5 run(s)" in page.meta
    # one recipe, two seeds: one set-up row
    assert page.setup["runs"].tolist() == [2] and page.setup["seeds"].tolist() == ["0, 1"]
    assert set(page.setup["precision"]) == {"bfloat16"}
    assert "**Set-up**" in report.page_markdown(page) and "bfloat16" in report.page_markdown(page)


def test_setup_table_one_row_per_distinct_recipe_with_its_seeds():
    def rec(seed, lr=0.1):
        return {"recipe": {"optimizer": "sgd", "lr": lr, "schedule": "cosine", "weight_decay": 5e-4, "epochs": 3},
                "amp": "bfloat16", "channels_last": True, "seed": seed}

    recs = [rec(s) for s in (0, 0, 1, 2)] + [rec(0, lr=0.05), rec(5, lr=0.05), rec(None, lr=0.2)]
    recs.append({"run": "original", "final": {}})  # no recipe: not trained, not a set-up
    table = report.setup_table(recs)
    assert table["runs"].tolist() == [4, 2, 1] and table["lr"].tolist() == ["0.1", "0.05", "0.2"]
    assert table["seeds"].tolist() == ["0-2", "0, 5", "-"]  # seeds do not split a set-up
    assert table.loc[0, "precision"] == "bfloat16" and table.loc[0, "optimizer"] == "sgd"
    assert report.setup_table([{"run": "x"}]) is None


def test_part4_data_line_names_the_faces_the_runs_used():
    """The data line comes from the records (params.faces), not from a data set the spec assumes."""
    for seed in (1, 2):
        fake_run("part4", f"feature_extraction_s{seed}", 10.0, faces="/data/my-faces",
                 extra={"final": {"new_test_top1": 10.0, "old_test_top1": 50.0}, "seed": seed})
    page = report.build_page("part4", PROFILE)
    assert "faces (new task): generated images (my-faces)" in page.meta and "seeds 1-2" in page.meta
    assert "ORL" not in page.meta and "ORL" not in part4.REPORT.data


def _report_notebook_cells(name):
    from pathlib import Path

    nb = json.loads((Path(profiles.REPO_ROOT) / "notebooks" / name).read_text())
    return [c for c in nb["cells"] if "report" in c.get("metadata", {}).get("tags", [])]


@pytest.mark.parametrize("part", ["part1", "part2", "part3", "part4", "part5"])
def test_each_notebook_tags_the_conclusion_the_report_prints(part):
    """The notebook's conclusion cell (tagged ``report``) displays the very texts the page
    prints: the part's findings from the records and its opinion."""
    spec = report.spec_of(part)
    sources = ["".join(c["source"]) for nb in spec.notebooks for c in _report_notebook_cells(nb)]
    assert sources, f"{spec.notebooks} has no cell tagged 'report'"
    joined = "\n".join(sources)
    assert "findings(" in joined
    if getattr(report.part_module(part), "OPINION", ""):
        assert "OPINION" in joined or "READING" in joined


@pytest.mark.skipif(not pdf.latex_available(), reason="xelatex and pandoc are not installed")
def test_latex_pages_are_clean_one_page_each(part1_records, part2_records):
    """The LaTeX path, as printed: one A4 page, no numbered headings ("0.1 Part 1"), no
    characters printed over others (the positions of the PDF's characters), every table
    header on one line, the figure row embedded as a vector PDF, page images rendered."""
    pytest.importorskip("pdfplumber")
    import shutil
    import subprocess

    for entry in report.export_reports(PROFILE, parts=["1", "2"], engine="latex", log=None):
        path = profiles.reports_dir() / entry["pdf"]
        text, boxes = pdf_text_and_boxes(path)
        text = text.replace("\u2019", "'")  # LaTeX prints ' as a typographic apostrophe
        assert entry["engine"] == "latex" and len(boxes) == 1, entry
        assert pdf.layout_problems(path) == [] and entry["layout_problems"] == []
        assert "0.1 Part" not in text and "Part " in text
        assert "not the assignment's result" in text and "seeds not recorded" in text
        if entry["part"] == "part1":
            assert "best top-1" in text and "train time" in text and "SE-WRN-28-8" in text
        if shutil.which("pdftoppm"):
            out = path.with_suffix("")
            subprocess.run(["pdftoppm", "-r", "40", "-png", "-singlefile", str(path), str(out)], check=True)
            assert out.with_suffix(".png").stat().st_size > 5000  # a page with ink, not a blank one


def test_figures_readme_names_every_figure_a_notebook_saves():
    import re
    from pathlib import Path

    root = Path(profiles.REPO_ROOT)
    listed = (root / "figures" / "README.md").read_text()
    saved = set()
    for path in (root / "notebooks").glob("part*.ipynb"):
        for cell in json.loads(path.read_text())["cells"]:
            src = "".join(cell["source"])
            if cell["cell_type"] == "code" and "save_figure" in src:
                saved |= set(re.findall(r'"(part\d_\w+)"\)', src))
    assert len(saved) >= 10, saved
    assert {name for name in saved if f"`{name}.png`" not in listed} == set()
    assert set(report.README_FIGURES) <= saved


def test_readme_figures_copies_small_labelled_pngs(tmp_path):
    import matplotlib.image as mpimg

    tiny_figure("part1_test_top1")
    tiny_figure("part3_heatmap")
    text, copies = report.readme_figures("quick", out_dir=tmp_path / "docs" / "figures")
    assert [c.name for c in copies] == ["part1_test_top1.png", "part3_heatmap.png"]
    assert mpimg.imread(copies[0]).shape[1] == report.README_FIGURE_WIDTH_PX
    assert "![part1_test_top1: quick profile, " in text and "Not saved yet: `part2_gain.png`" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{report.FIGURES_START}\nOLD-BLOCK\n{report.FIGURES_END}\nb\n")
    report.update_readme(text, readme, start=report.FIGURES_START, end=report.FIGURES_END)
    assert "part3_heatmap" in readme.read_text() and "OLD-BLOCK" not in readme.read_text()
    assert report.FIGURES_START in (profiles.REPO_ROOT / "README.md").read_text()


def test_text_markdown_keeps_a_list_opinion_a_list():
    """Part 4's reading is a Markdown list: its first item must not be glued to the heading."""
    fake_run("part4", "feature_extraction", 10.0, extra={"final": {"new_test_top1": 10.0, "old_test_top1": 50.0}})
    markdown = report.text_markdown(report.build_page("part4", PROFILE))
    assert "**Reading the results.**\n\n- **Feature extraction**" in markdown


# --------------------------------------------------------------------------- issue 18: runs over seeds
def part2_seeded(keys, seeds=(0, 1, 2), top1=None):
    """Part 2's experiments ``keys`` as its notebook names them over ``seeds`` (teachers once,
    part2.seeds_of); best top-1 ``top1[key] + seed`` unless given per seed as a tuple."""
    plan = part2.part2_plan("big", "small", 0.9, 4.0, assistant="mid")
    for key in keys:
        exp = plan[key]
        for seed in part2.seeds_of(exp, seeds):
            base = (top1 or {}).get(key, 40.0)
            value = base[seed] if isinstance(base, tuple) else base + seed
            run = exp.run(PROFILE, seed)
            fake_run("part2", run.name, value, n_params=46_900, extra={"seed": seed, "recipe": RECIPE},
                     **run.params)


def test_part2_rows_fold_the_seeds_of_a_run_on_the_page_and_in_the_readme():
    part2_seeded(("task1_teacher", "task1_student", "task2", "task3"),
                 top1={"task1_teacher": 60.0, "task1_student": (40.0, 42.0, 44.0), "task2": (41.0, 45.0, 55.0),
                       "task3": (47.0, 48.0, 49.0)})
    page = report.build_page("part2", PROFILE)
    (table,) = page.tables
    frame = table.frame
    assert frame["task"].tolist() == ["Task 1", "Task 1", "Task 2", "Task 3"]  # one row per run, not per seed
    assert list(frame.columns)[list(frame.columns).index("best top-1 %") - 1] == "seeds"
    assert frame["seeds"].tolist() == ["1", "3", "3", "3"]
    assert frame["best top-1 %"].tolist() == ["60.0", "42.0 ± 2.0", "47.0 ± 7.2", "48.0 ± 1.0"]
    assert frame["params"].tolist() == ["46.9k"] * 4  # from the runs, equal over seeds
    assert table.best_row == 3  # task 3 has the best mean (48.0); task 2 the best single run (55.0)
    assert [r["label"] for r in table.records][1:] == ["Task 1 CE + label smoothing (recipe) (small)",
                                                       "Task 2 KD (small)", "Task 3 KD (small)"]
    assert "10 run(s)" in page.meta and "seeds 0-2" in page.meta  # every seed's run counts
    assert page.setup["runs"].tolist() == [10] and page.setup["seeds"].tolist() == ["0-2"]
    assert table.note == "each run's seeds in one row, mean ± sample std"
    curve = next(r for r in table.records if r["label"].startswith("Task 3"))["history"]
    assert curve[-1]["test_top1"] == pytest.approx(48.0)  # the curve drawn: the mean over seeds

    markdown = report.readme_tables(PROFILE, parts=["2"])
    assert "| **Task 3** " in markdown and "**48.0 ± 1.0**" in markdown and "| 47.0 ± 7.2 " in markdown
    assert "_seed1" not in markdown and "Rows: each run's seeds in one row, mean ± sample std." in markdown
    findings = markdown.split("**Findings** (computed from the records)", 1)[1]
    assert findings.strip().splitlines()[0].startswith("- ")  # the report's findings as bullets
    assert all(f"- {line}" in findings for line in report.build_page("part2", PROFILE).findings)

    (entry,) = report.export_reports(PROFILE, parts=["2"], engine="matplotlib", log=None)
    text, boxes = pdf_text_and_boxes(profiles.reports_dir() / entry["pdf"])
    assert len(boxes) == 1 and "47.0 ± 7.2" in text and "seeds" in text
    assert entry["records"] == 10


def test_a_wide_seeded_table_stays_on_one_legible_page(monkeypatch):
    """Every part 2 experiment over three seeds (the widest table, with ± cells and the seeds
    column): the matplotlib page stays one A4 page with no overlapping characters."""
    import dataclasses

    pytest.importorskip("pdfplumber")
    plan = part2.part2_plan("big", "small", 0.9, 4.0, assistant="mid")
    part2_seeded(tuple(plan), top1={key: 30.0 + i for i, key in enumerate(plan)})
    table = dataclasses.replace(part2.REPORT.tables[0], max_rows=len(plan))  # every row shown
    monkeypatch.setattr(part2, "REPORT", dataclasses.replace(part2.REPORT, tables=(table,)))
    (entry,) = report.export_reports(PROFILE, parts=["2"], engine="matplotlib", log=None)
    assert entry["pages"] == 1 and entry["layout_problems"] == []
    page = report.build_page("part2", PROFILE)
    assert len(page.tables[0].frame) == len(plan) and "± 1.0" in page.tables[0].frame["best top-1 %"].iloc[-1]
    assert "A ± is" not in page.caveat and "short runs" in page.caveat  # smoke: no noise claim
    quick = report._caveat("quick", "3", "CPU", seeded=True)
    assert "A ± is the sample standard deviation of a row's runs over seeds" in quick
    assert "Gaps of a few points are within run-to-run noise" in report._caveat("quick", "3", "CPU")
