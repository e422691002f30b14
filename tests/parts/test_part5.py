"""Part 5 helpers (kdutils.parts.part5): food-11 splits and loaders, pseudo-labels, records for
compression results, pruning with fine-tuning, storage formats, the leaderboard file, and the
notebook's steps, tables, figures and findings (tiny models on a generated food-11 tree)."""
import csv
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from kdutils.compress import prune, quantize, size
from kdutils.core import data as D
from kdutils.core import records as R
from kdutils.core.counting import count_params
from kdutils.core.findings import noise_band
from kdutils.core.profiles import resolve
from kdutils.core.recipe import Recipe
from kdutils.core.train import Run, Runtime, evaluate, predict_logits
from kdutils.models import build_model
from kdutils.parts import part5 as F

SIZE, CROP = 40, 32

QUIET_CPU = Runtime(device="cpu", log="off")


@pytest.fixture(scope="module")
def food_tree(tmp_path_factory):
    """A tiny food-11 tree: 11 classes, 4 labeled and 2 validation images each, 9 unlabeled, 7 test."""
    root = tmp_path_factory.mktemp("food") / "food11"
    return D.make_food11_tree(root, num_classes=11, per_class=4, n_unlabeled=9, n_val_per_class=2, n_test=7)


@pytest.fixture
def splits(food_tree):
    return F.load_food_splits(food_tree, SIZE)


# --------------------------------------------------------------------------- data and loaders
def test_splits_take_classes_from_folders_and_resize(splits):
    assert splits.num_classes == 11
    assert splits.classes == [f"{c:02d}" for c in range(11)]
    assert (len(splits.labeled), len(splits.validation), len(splits.unlabeled), len(splits.testing)) == (44, 22, 9, 7)
    for s in (splits.labeled, splits.validation, splits.unlabeled, splits.testing):
        assert tuple(s.images.shape[1:]) == (SIZE, SIZE, 3) and s.images.dtype == torch.uint8
    assert (splits.unlabeled.labels == -1).all() and (splits.testing.labels == -1).all()
    assert sorted(splits.labeled.labels.unique().tolist()) == list(range(11))
    assert splits.counts().loc["testing", "images"] == 7


def test_splits_subsample_deterministically(food_tree):
    a = F.load_food_splits(food_tree, SIZE, labeled_per_class=2, validation_per_class=1, unlabeled_max=5, seed=3)
    b = F.load_food_splits(food_tree, SIZE, labeled_per_class=2, validation_per_class=1, unlabeled_max=5, seed=3)
    assert (len(a.labeled), len(a.validation), len(a.unlabeled), len(a.testing)) == (22, 11, 5, 7)
    assert torch.bincount(a.labeled.labels, minlength=11).tolist() == [2] * 11
    assert a.unlabeled.files == b.unlabeled.files


def test_student_labels_cut_the_students_set_and_keep_the_teachers(splits):
    cut = F.student_labels(splits, 2, seed=0)
    assert cut.teacher_labeled is splits.labeled and cut.teacher_set is splits.labeled
    assert torch.bincount(cut.labeled.labels, minlength=11).tolist() == [2] * 11
    assert set(cut.labeled.files) <= set(splits.labeled.files)
    assert cut.labeled.files == splits.labeled.per_class(2, 0).files  # the same draw as ImageSet.per_class
    assert cut.unlabeled is splits.unlabeled  # the left-out labeled images join no student's set
    counts = cut.counts()
    assert counts.loc["labeled (teacher)", "images"] == 44 and counts.loc["labeled (students)", "images"] == 22
    assert "labeled" in splits.counts().index and splits.teacher_set is splits.labeled
    assert F.student_labels(splits, None) is splits and F.student_labels(splits, 4) is splits  # nothing to cut
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="student_labeled_per_class"):
            F.student_labels(splits, bad)
    with pytest.raises(ValueError, match="already"):
        F.student_labels(cut, 1)


def test_validation_with_other_classes_is_rejected(tmp_path):
    root = D.make_food11_tree(tmp_path / "food", num_classes=3, per_class=2, n_unlabeled=2, n_val_per_class=1,
                              n_test=2)
    (root / "validation" / "02").rename(root / "validation" / "07")
    with pytest.raises(ValueError, match="validation classes"):
        F.load_food_splits(root, SIZE)


def test_food_root_smoke_and_missing(tmp_path):
    smoke = resolve("smoke", "", {"smoke": {}})
    assert (F.food_root(smoke) / "training" / "labeled").is_dir()
    quick = resolve("quick", str(tmp_path), {"quick": {}})
    with pytest.raises(FileNotFoundError, match="food_dir"):
        F.food_root(quick)
    assert F.food_root(quick, str(F.food_root(smoke))) == F.food_root(smoke)


def test_loaders_crop_flip_and_centre(splits):
    train = F.training_loader(splits.labeled, batch_size=8, crop=CROP, device="cpu")
    val = F.eval_loader(splits.validation, CROP, device="cpu")
    x, y, idx = next(iter(train))
    assert x.shape == (8, 3, CROP, CROP) and x.dtype == torch.float32
    assert torch.equal(y, splits.labeled.labels[idx])
    assert len(train) == 44 // 8  # training drops the last incomplete batch
    batches = list(val)
    assert sum(len(b[1]) for b in batches) == 22  # evaluation sees every image once, in order
    mean, std = F.NORMALIZATION
    off = (SIZE - CROP) // 2
    centre = splits.validation.images[0, off:off + CROP, off:off + CROP].permute(2, 0, 1).float() / 255
    expected = (centre - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert torch.allclose(batches[0][0][0], expected, atol=1e-5)
    ev = F.eval_loader(splits.testing, CROP, batch_size=4, device="cpu")
    assert [len(b[1]) for b in ev] == [4, 3]


# --------------------------------------------------------------------------- pseudo-labels
def test_select_confident_by_threshold():
    probs = torch.tensor([[0.95, 0.05, 0.0], [0.4, 0.35, 0.25], [0.1, 0.2, 0.7], [0.0, 0.9, 0.1]])
    logits = probs.clamp_min(1e-6).log() + 3.0  # any shift: softmax gives the same probabilities
    index, labels, conf = F.select_confident(logits, 0.7)
    assert index.tolist() == [0, 2, 3]
    assert labels.tolist() == [0, 2, 1]
    assert torch.allclose(conf, torch.tensor([0.95, 0.4, 0.7, 0.9]), atol=1e-4)
    assert F.select_confident(logits, 0.0)[0].tolist() == [0, 1, 2, 3]
    assert F.select_confident(logits, 0.96)[0].numel() == 0
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match="threshold"):
            F.select_confident(logits, bad)


def test_add_pseudo_labels_appends_confident_images(splits):
    n_unl, k = len(splits.unlabeled), splits.num_classes
    logits = torch.zeros(n_unl, k)
    logits[0, 3] = 10.0  # confident: class 3
    logits[4, 7] = 10.0  # confident: class 7
    logits[5, 1] = 0.5  # not confident
    combined, info = F.add_pseudo_labels(splits.labeled, splits.unlabeled, logits, threshold=0.9)
    n = len(splits.labeled)
    assert len(combined) == n + 2
    assert combined.labels[n:].tolist() == [3, 7]
    assert torch.equal(combined.images[n], splits.unlabeled.images[0])
    assert torch.equal(combined.images[n + 1], splits.unlabeled.images[4])
    assert combined.files[n:] == [splits.unlabeled.files[0], splits.unlabeled.files[4]]
    assert info["n_pseudo"] == 2 and info["n_unlabeled"] == n_unl
    assert info["pseudo_per_class"][3] == 1 and sum(info["pseudo_per_class"]) == 2
    with pytest.raises(ValueError, match="unlabeled images"):
        F.add_pseudo_labels(splits.labeled, splits.unlabeled, logits[:-1], 0.9)


# --------------------------------------------------------------------------- records
def test_try_build_model_reports_missing_weights(monkeypatch):
    from kdutils.models import torchvision_resnet

    def offline(weights, progress):
        raise RuntimeError("could not obtain the ResNet-18 weights (offline)")

    monkeypatch.setattr(torchvision_resnet, "_pretrained_state_dict", offline)
    model, reason = F.try_build_model("resnet18_food", 11, weights="IMAGENET1K_V1")
    assert model is None and "offline" in reason
    model, reason = F.try_build_model("food_student", 11)
    assert isinstance(model, nn.Module) and reason == ""


def test_computed_and_skipped_records():
    calls = []

    def compute():
        calls.append(1)
        return {"val_top1": 42.0, "size_bytes": 1234}

    run = Run(F.PART, "quant-x-minmax8", "smoke", {"method": "minmax8"})
    rec = F.computed_record(run, compute)
    assert rec["status"] == "complete" and rec["val_top1"] == 42.0 and rec["params"]["method"] == "minmax8"
    assert R.load_record(F.PART, "quant-x-minmax8", "smoke")["size_bytes"] == 1234
    F.computed_record(run, compute)
    assert len(calls) == 1  # finished: not computed again
    F.computed_record(run, compute, force=True)
    assert len(calls) == 2

    skipped = F.skipped_record(Run(F.PART, "teacher_pretrained", "smoke"), "not available offline", "no internet")
    assert skipped["status"] == "skipped" and not R.is_finished(skipped)
    assert R.load_record(F.PART, "teacher_pretrained", "smoke")["note"] == "not available offline"


# --------------------------------------------------------------------------- compression
@pytest.fixture
def trained_student(splits):
    train = F.training_loader(splits.labeled, batch_size=11, crop=CROP, device="cpu")
    val = F.eval_loader(splits.validation, CROP, device="cpu")
    model = build_model("food_student", splits.num_classes)
    F.train_run(model, Run(F.PART, "student", "smoke"), "student (CE)", train, val, Recipe(1, lr=0.05),
                runtime=QUIET_CPU)
    return model, train, val


def test_train_run_records_label_and_size(trained_student):
    model, train, val = trained_student
    rec = R.load_record(F.PART, "student", "smoke")
    assert rec["status"] == "complete" and rec["label"] == "student (CE)"
    assert rec["size_bytes"] == size.serialized_size(model.state_dict())
    assert rec["n_params"] == sum(p.numel() for p in model.parameters()) <= 100_000
    again = build_model("food_student", 11)
    rec2 = F.train_run(again, Run(F.PART, "student", "smoke"), "student (CE)", train, val, Recipe(1, lr=0.05),
                       runtime=QUIET_CPU)
    assert rec2["history"] == rec["history"]  # finished: not trained again, weights loaded
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))


def test_prune_with_fine_tuning_keeps_zeros(trained_student, tmp_path):
    model, train, val = trained_student
    before = prune.count_nonzero_params(model)
    out = F.prune_with_fine_tuning(model, 0.5, 2, F.make_fine_tuner(train, Recipe(1, lr=0.01), device="cpu"), val,
                                   tmp_path / "pruned.pt")
    hist = out["history"]
    assert [h["step"] for h in hist] == [0, 1, 2]
    assert [round(h["sparsity"], 2) for h in hist] == [0.0, 0.5, 0.75]  # fine-tuning kept the zeros at zero
    assert hist[0]["nonzero_params"] == before > hist[1]["nonzero_params"] > hist[2]["nonzero_params"]
    assert all(0 <= h["val_top1"] <= 100 for h in hist)
    assert prune.count_nonzero_params(model) == before  # the original is untouched
    assert out["size_bytes"] == size.file_size(tmp_path / "pruned.pt") and out["zipped_bytes"] < out["size_bytes"]
    state = torch.load(tmp_path / "pruned.pt", weights_only=True)
    assert not any(k.endswith("_mask") or k.endswith("_orig") for k in state)

    fig = F.plot_pruning([{"params": {"rate": 0.5}, "history": hist}])
    assert len(fig.axes[0].lines) == 1 and len(fig.axes[0].lines[0].get_xdata()) == 3


def test_pruning_works_on_a_channels_last_model(trained_student, tmp_path):
    """fit may train in channels-last layout (measured faster on some CPUs); pruning must not care."""
    model, _, val = trained_student
    model.to(memory_format=torch.channels_last)

    def fine_tune(m):  # what fit does to the layout when it picks channels-last
        m.to(memory_format=torch.channels_last)

    out = F.prune_with_fine_tuning(model, 0.5, 2, fine_tune, val, tmp_path / "pruned.pt")
    assert [round(h["sparsity"], 2) for h in out["history"]] == [0.0, 0.5, 0.75]


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_storage_variants_sizes_and_accuracy(trained_student, tmp_path):
    model, _, val = trained_student
    build = lambda: build_model("food_student", 11)  # noqa: E731
    calibration = [x for x, *_ in val]
    rows = {m: F.storage_variant(model, build, m, tmp_path / f"{m}.pt", val, calibration) for m in F.STORAGE_METHODS}
    assert rows["minmax8"]["size_bytes"] < rows["float16"]["size_bytes"] < rows["float32"]["size_bytes"]
    assert 3.5 <= rows["float32"]["size_bytes"] / rows["minmax8"]["size_bytes"] <= 4.1
    assert rows["float32"]["val_top1"] == pytest.approx(evaluate(model, val, device="cpu")["top1"])
    for m in ("float16", "minmax8"):
        assert 0 <= rows[m]["val_top1"] <= 100 and Path(rows[m]["file"]).is_file()
    if rows["int8_x86"]["size_bytes"] is None:  # no torchao here
        assert "torchao" in rows["int8_x86"]["note"]
    else:
        assert rows["int8_x86"]["int8_convs"] == 15 and rows["int8_x86"]["float_convs"] == 0
        assert rows["int8_x86"]["weight_bytes"] < rows["minmax8"]["size_bytes"] * 1.5
        assert abs(rows["int8_x86"]["val_top1"] - rows["float32"]["val_top1"]) <= 50  # runs; smoke model is random
    with pytest.raises(ValueError, match="calibration"):
        F.storage_variant(model, build, "int8_x86", tmp_path / "y.pt2", val)
    with pytest.raises(ValueError, match="method"):
        F.storage_variant(model, build, "int4", tmp_path / "x.pt", val)


# --------------------------------------------------------------------------- leaderboard
def test_leaderboard_from_a_tiny_run(trained_student, splits, tmp_path):
    model, _, _ = trained_student
    path = F.write_test_predictions(model, splits.testing, tmp_path / "sub" / "leaderboard.csv", CROP,
                                    splits.num_classes, device="cpu")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Id", "Category"]
    assert [r[0] for r in rows[1:]] == [Path(p).stem for p in splits.testing.files] == [f"{i:04d}" for i in range(7)]
    expected = predict_logits(model, F.eval_loader(splits.testing, CROP, device="cpu"), device="cpu").argmax(1)
    assert [int(r[1]) for r in rows[1:]] == expected.tolist()
    with pytest.raises(ValueError, match="classes"):
        F.write_test_predictions(model, splits.testing, tmp_path / "bad.csv", CROP, 10, device="cpu")


def test_leaderboard_csv(tmp_path):
    names = [f"test/{i:04d}.jpg" for i in range(20)]
    preds = torch.randint(0, 11, (20,))
    path = F.write_leaderboard_csv(tmp_path / "sub" / "pred.csv", names, preds, num_classes=11)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Id", "Category"]
    assert len(rows) == 1 + len(names)
    assert [r[0] for r in rows[1:]] == [f"{i:04d}" for i in range(20)]
    assert all(0 <= int(r[1]) < 11 for r in rows[1:])
    assert [int(r[1]) for r in rows[1:]] == preds.tolist()


@pytest.mark.parametrize(
    "ids, preds",
    [
        (["0001.jpg", "0002.jpg"], [1]),  # length mismatch
        (["0001.jpg", "0002.jpg"], [1, 11]),  # class id out of range
        (["0001.jpg", "0002.jpg"], [1, -1]),
        (["0001.jpg", "0002.jpg"], [1, 2.5]),  # not an int
        (["0001.jpg", "0001.jpg"], [1, 2]),  # duplicate id
    ],
)
def test_leaderboard_rejects_bad_input(tmp_path, ids, preds):
    with pytest.raises(ValueError):
        F.write_leaderboard_csv(tmp_path / "pred.csv", ids, preds, num_classes=11)
    assert not (tmp_path / "pred.csv").exists()


def test_image_id_drops_image_suffixes_only():
    assert F.image_id("testing/00/0007.JPG") == "0007"
    assert F.image_id("0007") == "0007"
    assert F.image_id("notes.txt") == "notes.txt"


# --------------------------------------------------------------------------- the notebook's steps
def _settings(**changes):
    """The smoke profile of the notebook, scaled to the tiny tree (batches of 11, ~20k-parameter nets)."""
    settings = dict(optimizer="adamw", weight_decay=0.05, teacher_lr=2e-3, finetune_lr=5e-4, lr=5e-3,
                    prune_lr=1e-3, T=4.0, alpha=0.5, compare_params=20_000, size=SIZE, crop=CROP, batch_size=11,
                    unlabeled_max=None, teacher_epochs=1, finetune_epochs=1, student_epochs=1, compare_epochs=1,
                    prune_steps=2, pseudo_threshold=0.0, try_pretrained=False)
    return resolve("smoke", "", {"smoke": {**settings, **changes}})


@pytest.fixture
def study(splits):
    return F.Study(_settings(), splits, device="cpu", log="off")


def test_study_runs_carry_the_data_settings(study, food_tree):
    run = study.run("student_kd_semi", n_train=50, T=4.0)
    assert (run.part, run.name, run.profile) == (F.PART, "student_kd_semi", "smoke")
    assert run.params == {"data": str(food_tree), "size": SIZE, "crop": CROP, "n_train": 50, "n_val": 22, "T": 4.0}
    assert study.runtime == Runtime(device="cpu", log="off", force=False)
    recipe = study.recipe("teacher_epochs", "teacher_lr")
    assert (recipe.optimizer, recipe.weight_decay, recipe.schedule) == ("adamw", 0.05, "cosine")
    assert (recipe.epochs, recipe.lr) == (study.settings["teacher_epochs"], study.settings["teacher_lr"])
    assert (study.fine_tune_recipe.epochs, study.fine_tune_recipe.lr) == (1, study.settings["prune_lr"])
    assert study.compressed_dir.parts[-3:] == ("compressed", "smoke", F.PART)
    assert len(study.train_loader) == 44 // 11 and study.num_classes == 11


@pytest.mark.parametrize("offline", [False, True])
def test_train_teachers_records_a_skipped_pretrained_teacher(splits, monkeypatch, offline):
    from kdutils.models import torchvision_resnet

    def no_network(weights, progress):
        raise RuntimeError("could not obtain the ResNet-18 weights (offline)")

    monkeypatch.setattr(torchvision_resnet, "_pretrained_state_dict", no_network)
    study = F.Study(_settings(try_pretrained=offline), splits, device="cpu", log="off")
    scratch = build_model("food_student", 11)  # stands in for the ResNet-18: any network trains the same way
    teachers, message = F.train_teachers(study, scratch)
    assert teachers == {"scratch": scratch}
    rec = R.load_record(F.PART, "teacher_scratch", "smoke")
    assert rec["status"] == "complete" and rec["label"] == "teacher ResNet-18 (scratch)"
    assert rec["params"]["weights"] == "random" and rec["params"]["model"] == "resnet18_food"
    skipped = R.load_record(F.PART, "teacher_pretrained", "smoke")
    assert skipped["status"] == "skipped" and skipped["label"] == F.TEACHER_PRETRAINED
    assert skipped["params"]["weights"] == "IMAGENET1K_V1"
    if offline:
        assert "offline" in message and skipped["note"].startswith("not available offline")
    else:
        assert message == "Pretrained teacher skipped: the smoke profile downloads nothing"
        assert skipped["note"] == "not tried in the smoke profile"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_train_teachers_fine_tunes_local_pretrained_weights(splits, tmp_path):
    from torchvision.models import resnet18

    torch.save(resnet18(num_classes=1000).state_dict(), tmp_path / "resnet18.pth")
    study = F.Study(_settings(try_pretrained=True), splits, device="cpu", log="off")
    teachers, message = F.train_teachers(study, build_model("food_student", 11), str(tmp_path / "resnet18.pth"))
    assert set(teachers) == {"scratch", "pretrained"} and message.endswith("file:resnet18.pth")
    rec = R.load_record(F.PART, "teacher_pretrained", "smoke")
    assert rec["status"] == "complete" and rec["label"] == F.TEACHER_PRETRAINED
    assert rec["params"]["weights"] == str(tmp_path / "resnet18.pth")
    assert rec["n_params"] == sum(p.numel() for p in teachers["pretrained"].parameters())


def test_students_semi_supervised_kd_table_and_curves(study):
    teachers, _ = F.train_teachers(study, build_model("food_student", 11))
    students = F.train_students(study, build_model("food_student", 11), teachers)
    assert set(students) == {"student", "student_kd_scratch"}
    key = F.best_teacher(teachers, "smoke")
    assert key == "scratch"
    semi, pseudo = F.train_semi_supervised(study, key, teachers[key])
    students["student_kd_semi"] = semi
    assert pseudo["n_pseudo"] == pseudo["n_unlabeled"] == 9  # threshold 0: every unlabeled image
    assert F.describe_pseudo_labels(key, pseudo).startswith(
        "teacher_scratch labels 9 of 9 unlabeled images with confidence >= 0.0 (mean confidence ")

    records = F.records_by_run("smoke")
    kd = records["student_kd_scratch"]
    assert kd["status"] == "complete" and kd["label"] == "student KD <- teacher (scratch)"
    assert {k: kd["params"][k] for k in ("teacher", "model", "T", "alpha")} == {
        "teacher": "teacher_scratch", "model": "food_student", "T": 4.0, "alpha": 0.5}
    assert records["student_kd_pretrained"]["status"] == "skipped"
    assert records["student_kd_pretrained"]["note"] == "teacher_pretrained not available"
    rec = records["student_kd_semi"]
    assert rec["params"]["n_train"] == 44 + 9 and rec["params"]["n_pseudo"] == 9
    assert rec["pseudo_labels"] == pseudo and rec["label"] == "student KD + pseudo-labels"

    table = F.kd_table(records)
    assert list(table.index) == list(F.KD_RUNS)
    assert table.loc["student_kd_semi", "train images"] == 53 and str(table["params"].dtype) == "Int64"
    assert table.loc["teacher_pretrained", "status"] == "skipped"
    assert table.loc["student", "val top-1 %"] == records["student"]["last"]["test_top1"]
    fig = F.plot_kd_curves(records)
    assert [line.get_label() for line in fig.axes[0].lines] == [
        "teacher ResNet-18 (scratch)", "student (scratch, CE)", "student KD <- teacher (scratch)",
        "student KD + pseudo-labels"]
    best = max(students, key=lambda n: records[n]["last"]["test_top1"])
    assert F.final_student_name(students, records) == best


def test_students_over_seeds_on_fewer_labels_than_the_teacher(splits):
    """The quick design on the tiny tree: a stand-in teacher (conv_net) trained on every labeled
    image, students on 2 per class, each student run once per seed with one shared table of the
    teacher's logits per training set; the KD table folds the seeds into one row."""
    study = F.Study(_settings(teacher_arch="conv_net", seeds=(0, 1)), F.student_labels(splits, 2), device="cpu",
                    log="off")
    assert study.seeds == (0, 1) and (study.teacher_loader.num_samples, study.train_loader.num_samples) == (44, 22)
    teacher = F.build_teacher(study)
    assert type(teacher).__name__ == "ComparisonNet" and F.teacher_arch(study.settings, "pretrained") == F.TEACHER_ARCH
    teachers, _ = F.train_teachers(study, teacher)
    rec = R.load_record(F.PART, "teacher_scratch", "smoke")
    assert rec["label"] == "teacher conv_net (scratch, stand-in for ResNet-18)"
    assert rec["params"]["n_train"] == 44 and rec["params"]["model"] == "conv_net"
    students = F.train_students(study, build_model("food_student", 11), teachers)
    semi, pseudo = F.train_semi_supervised(study, "scratch", teachers["scratch"])
    records = F.records_by_run("smoke")
    for name in ("student", "student_kd_scratch", "student_kd_semi"):
        runs = F.seed_records(records, name)
        assert [r["run"] for r in runs] == [name, f"{name}_seed1"] and [r["seed"] for r in runs] == [0, 1]
    assert records["student_seed1"]["params"]["n_train"] == 22 and records["student_kd_semi_seed1"]["params"][
        "n_train"] == 22 + pseudo["n_pseudo"]
    assert [r["run"] for r in F.seed_records(records, "student_kd_pretrained", finished=False)] == [
        "student_kd_pretrained", "student_kd_pretrained_seed1"]  # skipped, once per seed
    assert len(study._logit_tables) == 2  # one per training set (labeled, semi), shared by both seeds
    assert set(students) == {"student", "student_kd_scratch"} and semi is not students["student"]
    table = F.kd_table(records)
    row = table.loc["student_kd_scratch"]
    values = [records[n]["last"]["test_top1"] for n in ("student_kd_scratch", "student_kd_scratch_seed1")]
    assert row["seeds"] == 2 and row["val top-1 %"] == pytest.approx(sum(values) / 2)
    assert row["per seed"] == ", ".join(f"{v:.1f}" for v in values) and row["train images"] == 22
    assert table.loc["teacher_scratch", "seeds"] == 1 and pd.isna(table.loc["teacher_scratch", "± std"])
    labels = [line.get_label() for line in F.plot_kd_curves(records).axes[0].lines]
    assert labels[:2] == ["teacher conv_net (scratch, stand-in for ResNet-18)",
                          "student (scratch, CE) (mean of 2 seeds)"]
    quant = F.teacher_storage_records(study, "scratch", teachers["scratch"])
    assert [r["method"] for r in quant] == ["float32", "minmax8"] and quant[1]["val_top1"] is not None
    for run in ("student_seed1", "student_kd_scratch_seed1", "student_kd_semi_seed1"):  # what launch trains
        again = F.train_named(study, run)
        assert again["train_seconds"] == records[run]["train_seconds"], run  # the finished run, reused


def test_kd_objective_reads_cached_logits_or_runs_the_teacher(study, splits):
    from kdutils.distill.teachers import CachedLogits, LiveTeacher

    teacher = build_model("food_student", 11)
    live = F.kd_objective(study.settings, teacher)
    cached = F.kd_objective(study.settings, study.teacher_logits(teacher, study.train_loader))
    assert isinstance(live.teacher, LiveTeacher) and isinstance(cached.teacher, CachedLogits)
    assert study.teacher_logits(teacher, study.train_loader) is cached.teacher.table  # one table per loader
    assert (live.alpha, live.tau) == (cached.alpha, cached.tau) == (0.5, 4.0)


def test_launch_names_student_runs_of_other_seeds(study):
    F.check_training_run("student_kd_semi_seed2")
    for bad in ("teacher_scratch_seed1", "conv_net_seed1", "quant-student", "student_seed"):
        with pytest.raises(ValueError, match="has no training run"):
            F.check_training_run(bad)
    with pytest.raises(ValueError, match=r"seeds \[0\], not 3"):
        F.train_named(study, "student_seed3")


def test_quick_students_get_fewer_labels_than_the_teacher_and_full_keeps_the_assignment():
    quick, full = F.SETTINGS["quick"], F.SETTINGS["full"]
    assert quick["teacher_arch"] != F.TEACHER_ARCH and quick["teacher_epochs"] > quick["student_epochs"]
    assert quick["student_labeled_per_class"] < 150 and len(quick["seeds"]) >= 3
    assert (full["teacher_arch"], full["student_labeled_per_class"], full["seeds"]) == (F.TEACHER_ARCH, None, (0,))
    assert (full["size"], full["crop"], full["teacher_epochs"], full["student_epochs"]) == (142, 128, 40, 80)
    setup = F.resolve_setup("quick", "/nonexistent")
    assert setup["seeds"] == (0, 1, 2)


def test_train_comparison_matches_parameter_counts(study):
    compare = F.train_comparison(study)
    assert [r["run"] for r in compare] == ["conv_net", "dwsep_net", "group_net"]
    assert all(abs(r["n_params"] - 20_000) <= 0.05 * 20_000 for r in compare)
    table = F.compare_table(compare)
    assert list(table.index) == ["conv_net", "dwsep_net", "group_net"]
    assert list(table.columns) == ["width", "params", "float32 bytes", "FLOPs", "val top-1 %", "s / epoch"]
    assert table.loc["dwsep_net", "width"] == compare[1]["params"]["width"]


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_storage_records_quant_table_and_leaderboard(study, trained_student, splits):
    model, _, _ = trained_student
    quant = F.storage_records(study, "student", model, "food_student", F.STORAGE_METHODS)
    assert [r["run"] for r in quant] == [f"quant-student-{m}" for m in F.STORAGE_METHODS]
    assert all(r["status"] == "complete" and r["params"]["model"] == "student" for r in quant)
    assert quant[2]["label"] == "student (minmax8)"
    assert Path(quant[2]["file"]) == F.storage_path(study.compressed_dir, "student", "minmax8")
    again = F.storage_records(study, "student", model, "food_student", ("float32",))
    assert again[0]["seconds"] == quant[0]["seconds"]  # finished: not computed again

    table = F.quant_table(quant).set_index("format")
    assert table.loc["float32", "x smaller than float32"] == 1.0
    assert 3.5 <= table.loc["minmax8", "x smaller than float32"] <= 4.1
    assert table.loc["minmax8", "file bytes"] == quant[2]["size_bytes"]
    assert ("note" in table.columns) == (quant[3]["size_bytes"] is None)  # only when int8 is unavailable

    path = F.write_leaderboard(study, "student")
    assert path == F.leaderboard_path("smoke") and path.parts[-3:] == ("smoke", F.PART, "leaderboard.csv")
    shipped = quantize.load_quantized(quant[2]["file"], build_model("food_student", 11))
    expected = predict_logits(shipped, F.eval_loader(splits.testing, CROP, device="cpu"), device="cpu").argmax(1)
    with open(path, newline="") as f:
        assert [int(r[1]) for r in list(csv.reader(f))[1:]] == expected.tolist()


def test_pruning_records_and_table(study, trained_student):
    model, _, _ = trained_student
    recs = F.pruning_records(study, "student", model, [0.5, 0.2])
    assert [r["run"] for r in recs] == ["prune-student-rate0.5", "prune-student-rate0.2"]
    assert recs[0]["params"]["fine_tune"] == "1 epoch, lr 0.001" and recs[0]["params"]["steps"] == 2
    assert recs[0]["label"] == "student pruned 0.5/step"
    assert (study.compressed_dir / "student-pruned-0.5.pt").is_file()
    table = F.prune_table(recs)
    assert list(table.index) == [0.5, 0.2]
    assert round(table.loc[0.5, "final sparsity"], 2) == 0.75 and round(table.loc[0.2, "final sparsity"], 2) == 0.36
    assert table.loc[0.5, "val top-1 % before"] == recs[0]["start"]["val_top1"]
    assert table.loc[0.2, "zipped bytes"] == recs[1]["zipped_bytes"] < table.loc[0.2, "file bytes"]


def test_channel_pruning_records_measure_every_step_and_fill_the_compression_table(study, trained_student):
    pytest.importorskip("torch_pruning")
    model, _, _ = trained_student
    recs = F.pruning_records(study, "student", model, [0.3], methods=("magnitude", "channels"))
    assert [r["run"] for r in recs] == ["prune-student-rate0.3", "prune-student-channels-rate0.3"]
    magnitude, channels = recs
    assert channels["label"] == "student channels -0.3/step"
    params = [h["params"] for h in channels["history"]]
    assert params[0] > params[1] > params[2]  # channels really go
    assert [h["params"] for h in magnitude["history"]] == [params[0]] * 3  # zeros do not
    for h in channels["history"]:
        assert h["flops"] > 0 and h["file_bytes"] > 0 and set(h["latency_ms"]) == {"1", "64"}
    assert channels["history"][-1]["file_bytes"] < magnitude["history"][-1]["file_bytes"]
    shipped = prune.load_pruned(study.compressed_dir / "student-channels-pruned-0.3.pt",
                                build_model("food_student", 11))
    assert count_params(shipped) == params[-1]

    quant = F.storage_records(study, "student", model, "food_student", ("float32", "minmax8"), measure=True)
    table = F.compression_table(quant, recs)
    assert list(table.index) == ["float32 (float32 compute)", "minmax8 (float32 compute)",
                                 "student pruned 0.3/step x2", "student channels -0.3/step x2"]
    assert table.loc["student channels -0.3/step x2", "params"] == params[-1]
    assert table["ms/img b64"].notna().all() and table["FLOPs"].notna().all()
    fig = F.plot_pruning(recs)
    assert [len(ax.lines) for ax in fig.axes] == [2, 2, 2]


def test_channel_pruning_without_torch_pruning_is_a_skipped_record(study, trained_student, monkeypatch):
    real = F.importlib.util.find_spec
    monkeypatch.setattr(F.importlib.util, "find_spec", lambda name, *a: None if name == "torch_pruning" else real(name, *a))
    model, _, _ = trained_student
    assert F.pruning_records(study, "student", model, [0.3], methods=("channels",)) == []
    rec = R.load_record(F.PART, "prune-student-channels-rate0.3", "smoke")
    assert rec["status"] == "skipped" and "pip install torch-pruning" in rec["reason"]


# --------------------------------------------------------------------------- tables from records
def _quant_record(source, method, nbytes, top1):
    return {"run": f"quant-{source}-{method}", "label": f"{source} ({method})", "params": {"model": source},
            "method": method, "size_bytes": nbytes, "val_top1": top1}


QUANT = [_quant_record("teacher_scratch", "float32", 4000, 50.0), _quant_record("teacher_scratch", "minmax8", 1000, 48.0),
         _quant_record("student", "float32", 400, 40.0), _quant_record("student", "float16", 200, 40.0),
         _quant_record("student", "minmax8", 100, 39.0)]


def test_before_after_table_compares_with_the_teacher():
    records = {"teacher_scratch": {"n_params": 1000}, "student": {"n_params": 100}}
    table = F.before_after_table(QUANT, records)
    assert list(table.index) == ["teacher_scratch (float32)", "teacher_scratch (minmax8)", "student (float32)",
                                 "student (minmax8)"]
    assert list(table.columns) == ["params", "file bytes", "val top-1 %", "x smaller than teacher",
                                   "points vs teacher"]
    assert table["params"].tolist() == [1000, 1000, 100, 100]
    assert table["x smaller than teacher"].tolist() == [1.0, 4.0, 10.0, 40.0]
    assert table["points vs teacher"].tolist() == [0.0, -2.0, -10.0, -11.0]


def test_quant_table_keeps_a_note_only_when_a_row_has_one():
    table = F.quant_table(QUANT)
    assert "note" not in table.columns
    assert table["x smaller than float32"].tolist() == [1.0, 4.0, 1.0, 2.0, 4.0]
    failed = {**_quant_record("student", "int8_x86", None, None), "note": "no engine"}
    table = F.quant_table([*QUANT, failed])
    assert table["note"].tolist()[-1] == "no engine" and pd.isna(table["x smaller than float32"].iloc[-1])


def test_accuracy_vs_size_plots_every_result():
    compare = [{"label": "conv_net", "size_bytes": 2048, "last": {"test_top1": 30.0}}]
    pruned = [{"label": "student pruned 0.2/step", "zipped_bytes": 300, "final": {"val_top1": 38.0}}]
    fig = F.plot_accuracy_vs_size(QUANT, compare, pruned)
    ax = fig.axes[0]
    assert len(ax.collections) == len(QUANT) + 2 and ax.get_xscale() == "log"
    labels = ax.get_legend_handles_labels()[1]
    assert labels[-2:] == ["conv_net", "student pruned 0.2/step (zipped)"]
    assert ax.collections[-1].get_offsets().tolist() == [[300 / 1024, 38.0]]


# --------------------------------------------------------------------------- findings
def _trained(run, label, top1, epochs=3, **extra):
    return {"run": run, "label": label, "status": "complete", "profile": "quick", "device": "cpu",
            "epochs": epochs, "params": {"n_train": 1500, "crop": 64, "n_val": 500}, "last": {"test_top1": top1},
            **extra}


def _records():
    recs = [_trained("teacher_scratch", "teacher ResNet-18 (scratch)", 60.0, epochs=15),
            {"run": "teacher_pretrained", "label": F.TEACHER_PRETRAINED, "status": "skipped"},
            _trained("student", "student (scratch, CE)", 40.0),
            _trained("student_kd_scratch", "student KD <- teacher (scratch)", 41.0),
            _trained("student_kd_semi", "student KD + pseudo-labels", 50.0)]
    quant = [("teacher_scratch", "float32", 4 * 2**20, 60.0), ("teacher_scratch", "minmax8", 2**20, 59.0),
             ("student_kd_semi", "float32", 409_600, 50.0), ("student_kd_semi", "float16", 204_800, 50.0),
             ("student_kd_semi", "minmax8", 102_400, 49.0)]
    recs += [{**_quant_record(*q), "status": "complete"} for q in quant]
    recs.append({**_quant_record("student_kd_semi", "int8_x86", None, None), "status": "complete", "note": "n/a"})
    for rate, sparsity, after in ((0.4, 0.784, 30.0), (0.2, 0.488, 49.5)):
        recs.append({"run": f"prune-student_kd_semi-rate{rate:g}", "status": "complete",
                     "params": {"rate": rate, "steps": 3}, "start": {"val_top1": 50.0},
                     "final": {"val_top1": after, "sparsity": sparsity}})
    recs.append({"run": "prune-student-rate0.2", "status": "complete"})  # an earlier final student: ignored
    for kind, top1, n in (("conv", 45.0, 249_000), ("dwsep", 52.0, 251_000), ("group", 47.0, 250_000)):
        recs.append(_trained(f"{kind}_net", f"{kind}_net", top1, n_params=n))
    return recs


def test_findings_judge_every_difference_against_the_noise_band():
    lines = F.findings(_records(), num_classes=10)
    assert lines[0] == ("Profile quick on cpu: 1500 labeled images, 10 classes, 64px crops; teacher 15 epochs, "
                        "students 3 epochs.")
    assert lines[1].startswith("With 500 test images, two accuracies near 40.0% must differ by more than")
    assert lines[2].startswith("teacher ResNet-18 (scratch): top-1 60.0 (1 seed) vs 40.0 (1 seed) for the student "
                               "without KD (+20.0 points, a gain beyond")
    noise = noise_band((41.0 + 40.0) / 2, 500)
    assert lines[3] == ("student KD <- teacher (scratch): top-1 41.0 (1 seed) vs 40.0 (1 seed) for the student "
                        f"without KD (+1.0 points, inside the ±{noise:.2f}-point noise band).")
    assert lines[4].startswith("student KD + pseudo-labels: top-1 50.0 (1 seed) vs 40.0 (1 seed) for the student "
                               "without KD (+10.0 points, a gain beyond")
    assert lines[5] == "The largest gain beyond noise came from **student KD + pseudo-labels** (+10.00 points)."
    assert lines[6].startswith("Teacher teacher_scratch (float32): 4.0 MiB, 60.0%; final student "
                               "student_kd_semi (minmax8): 100 KiB (41x smaller), 49.0% (-11.0 points, a loss beyond")
    assert lines[7].startswith("float16: 2.00x smaller than float32, +0.0 points (inside")
    assert lines[8].startswith("minmax8: 4.00x smaller than float32, -1.0 points (inside")
    assert lines[9].startswith("Pruning 0.2/step: sparsity 49% after 3 steps, 50.0% -> 49.5% (inside")
    assert lines[10].startswith("Pruning 0.4/step: sparsity 78% after 3 steps, 50.0% -> 30.0% (a loss beyond")
    assert lines[11].startswith("At matched size (249k-251k parameters): conv_net 45.0%, dwsep_net 52.0%, "
                                "group_net 47.0%; best: dwsep_net (dwsep_net is ahead of group_net by 5.00 points")
    assert len(lines) == 12


def _seeded(run, label, values, n_train=500, **extra):
    return [{**_trained(run if i == 0 else f"{run}_seed{i}", label, v, **extra),
             "params": {"n_train": n_train, "crop": 64, "n_val": 500}} for i, v in enumerate(values)]


def test_findings_over_seeds_call_a_difference_real_only_beyond_the_seed_spread():
    """Students over three seeds: a KD row ahead of the student without KD by less than the seed
    spread is not a gain, one ahead by more is; the teacher (one seed, more labeled images) is
    judged against the noise band, and the setting names both training sets."""
    recs = [{**_trained("teacher_scratch", "teacher conv_net (scratch, stand-in for ResNet-18)", 48.0, epochs=30),
             "params": {"n_train": 1500, "crop": 64, "n_val": 500}}]
    recs += _seeded("student", "student (scratch, CE)", [30.0, 34.0, 32.0])  # 32 ± 2
    recs += _seeded("student_kd_scratch", "student KD <- teacher (scratch)", [46.0, 32.0, 37.0])  # +6.3, wide
    recs += _seeded("student_kd_semi", "student KD + pseudo-labels", [44.0, 45.0, 46.0], n_train=1000)  # +13
    by_run = {r["run"]: r for r in recs}
    lines = F.findings(by_run, num_classes=10)
    assert lines[0] == ("Profile quick on cpu: the teacher 1500 labeled images, the students 500, 10 classes, "
                        "64px crops; teacher 30 epochs, students 3 epochs, 3 seeds each.")
    assert lines[2].startswith("teacher conv_net (scratch, stand-in for ResNet-18): top-1 48.0 (1 seed) vs "
                               "32.0 ± 2.0 (3 seeds) for the student without KD (+16.0 points, a gain beyond")
    # +6.33 points: beyond the test-set noise band alone (6.04) but inside the seed spread (7.37)
    assert noise_band(32.0 + 6.33 / 2, 500) < 6.33
    assert lines[3] == ("student KD <- teacher (scratch): top-1 38.3 ± 7.1 (3 seeds) vs 32.0 ± 2.0 (3 seeds) for the "
                        "student without KD (+6.3 points, inside the ±7.37-point noise band: the larger of the seed "
                        "spread ±7.37 and the noise band).")
    assert "(+13.0 points, a gain beyond" in lines[4] and "seed spread ±2.24" in lines[4]
    assert lines[5] == "The largest gain beyond noise came from **student KD + pseudo-labels** (+13.00 points)."
    assert F.mean_top1(by_run, "student_kd_semi") == 45.0
    assert F.final_student_name(["student", "student_kd_scratch", "student_kd_semi"], by_run) == "student_kd_semi"
    assert [r["run"] for r in F.seed_records(by_run, "student")] == ["student", "student_seed1", "student_seed2"]


def test_findings_accept_records_by_run_and_say_when_nothing_is_there():
    by_run = {r["run"]: r for r in _records()}
    assert F.findings(by_run) == F.findings(list(by_run.values()))
    assert "classes" not in F.findings(by_run)[0]
    assert F.findings([]) == [F.NOTHING_YET]
    assert F.findings([{"run": "student", "status": "running"}]) == [F.NOTHING_YET]
    only_student = F.findings([_trained("student", "student (scratch, CE)", 40.0)])
    assert len(only_student) == 2 and "teacher" not in only_student[0]


@pytest.mark.parametrize("bad, says", [
    (dict(prune_rates=0.5), "prune_rates = 0.5 (float): a float is not a list"),
    (dict(alpha=1.5), "alpha = 1.5 (float): too large; allowed: a number >= 0 and <= 1"),
    (dict(alpha=True), "alpha = True (bool): a bool is not a number"),
    (dict(prune_rates=[0.2, 1.0]), "prune_rates = [0.2, 1.0] (list): item 1.0: too large"),
])
def test_notebook_rejects_a_bad_parameter_before_any_work(bad, says):
    """Issue 13: ``-p prune_rates 0.5`` raised a TypeError after all training, ``-p alpha 1.5`` after the
    teacher and student trained, and ``alpha=True`` was taken as 1.0: now the resolve cell stops first."""
    from tests.helpers import run_resolve_cell

    with pytest.raises(ValueError) as err:
        run_resolve_cell("part5_food11_compression.ipynb", **bad)
    assert says in str(err.value) and "nothing was run" in str(err.value)
