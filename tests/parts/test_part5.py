"""Part 5 helpers (kdutils.parts.part5): food-11 splits and loaders, pseudo-labels, records for
compression results, pruning with fine-tuning, storage formats and the leaderboard file."""
import csv
from pathlib import Path

import pytest
import torch
from torch import nn

from kdutils import compress as C
from kdutils.core import data as D
from kdutils.core import records as R
from kdutils.core.profiles import resolve
from kdutils.core.train import Run, evaluate, predict_logits
from kdutils.models import build_model
from kdutils.parts import part5 as F

SIZE, CROP = 40, 32


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
    F.train_run(model, Run(F.PART, "student", "smoke"), "student (CE)", train, val, epochs=1, lr=0.05,
                log="off", device="cpu")
    return model, train, val


def test_train_run_records_label_and_size(trained_student):
    model, train, val = trained_student
    rec = R.load_record(F.PART, "student", "smoke")
    assert rec["status"] == "complete" and rec["label"] == "student (CE)"
    assert rec["size_bytes"] == C.serialized_size(model.state_dict())
    assert rec["n_params"] == sum(p.numel() for p in model.parameters()) <= 100_000
    again = build_model("food_student", 11)
    rec2 = F.train_run(again, Run(F.PART, "student", "smoke"), "student (CE)", train, val, epochs=1, lr=0.05,
                       log="off", device="cpu")
    assert rec2["history"] == rec["history"]  # finished: not trained again, weights loaded
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))


def test_prune_with_fine_tuning_keeps_zeros(trained_student, tmp_path):
    model, train, val = trained_student
    before = C.count_nonzero_params(model)
    out = F.prune_with_fine_tuning(model, 0.5, 2, F.make_fine_tuner(train, lr=0.01, device="cpu"), val,
                                   tmp_path / "pruned.pt")
    hist = out["history"]
    assert [h["step"] for h in hist] == [0, 1, 2]
    assert [round(h["sparsity"], 2) for h in hist] == [0.0, 0.5, 0.75]  # fine-tuning kept the zeros at zero
    assert hist[0]["nonzero_params"] == before > hist[1]["nonzero_params"] > hist[2]["nonzero_params"]
    assert all(0 <= h["val_top1"] <= 100 for h in hist)
    assert C.count_nonzero_params(model) == before  # the original is untouched
    assert out["size_bytes"] == C.file_size(tmp_path / "pruned.pt") and out["zipped_bytes"] < out["size_bytes"]
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
    rows = {m: F.storage_variant(model, build, m, tmp_path / f"{m}.pt", val) for m in F.STORAGE_METHODS}
    assert rows["minmax8"]["size_bytes"] < rows["float16"]["size_bytes"] < rows["float32"]["size_bytes"]
    assert 3.5 <= rows["float32"]["size_bytes"] / rows["minmax8"]["size_bytes"] <= 4.1
    assert rows["float32"]["val_top1"] == pytest.approx(evaluate(model, val, device="cpu")["top1"])
    for m in ("float16", "minmax8"):
        assert 0 <= rows[m]["val_top1"] <= 100 and Path(rows[m]["file"]).is_file()
    if rows["torch_int8"]["size_bytes"] is None:
        assert rows["torch_int8"]["note"]
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
