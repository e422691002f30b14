"""Part 4: face splits, the two-head network and the three adaptation methods."""
from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from kdutils.core import data
from kdutils.core.data import ImageSet
from kdutils.core.objective import Batch
from kdutils.core.recipe import Recipe
from kdutils.core.train import Run, Runtime, load_checkpoint

CPU = Runtime(device="cpu")
from kdutils.parts import part4 as L
from kdutils.parts.part4 import load_faces

MEAN, STD = data.NORMALIZATION["cifar10"]


# --------------------------------------------------------------------------- face data
def test_split_counts_are_per_subject_disjoint_and_deterministic(tmp_path):
    root = data.make_image_tree(tmp_path / "faces", num_classes=4, per_class=12, size=(40, 30), fmt="pgm", grey=True,
                                class_names=["s1", "s2", "s3", "s4"])
    split = load_faces(root, n_train=7, n_test=3, seed=0)
    assert len(split.train) == 28 and len(split.test) == 12
    assert torch.bincount(split.train.labels).tolist() == [7] * 4
    assert torch.bincount(split.test.labels).tolist() == [3] * 4
    assert split.subjects == ["s1", "s2", "s3", "s4"] and split.dropped == []
    assert not set(split.train.files) & set(split.test.files)
    # Every image keeps its subject's label.
    for f, y in zip(split.train.files + split.test.files, split.train.labels.tolist() + split.test.labels.tolist()):
        assert f.split("/")[-2] == split.subjects[y]
    again = load_faces(root, n_train=7, n_test=3, seed=0)
    assert again.train.files == split.train.files and again.test.files == split.test.files
    assert torch.equal(again.train.images, split.train.images)
    other = load_faces(root, n_train=7, n_test=3, seed=1)
    assert other.train.files != split.train.files


def test_subject_with_too_few_images_is_named_or_dropped(tmp_path):
    root = data.make_image_tree(tmp_path / "faces", num_classes=3, per_class=10, fmt="png",
                                class_names=["alice", "bob", "carol"])
    for f in sorted((root / "bob").iterdir())[:4]:
        f.unlink()  # bob keeps 6 images
    with pytest.raises(ValueError, match=r"bob \(6 images\)"):
        load_faces(root, n_train=8, n_test=2)
    split = load_faces(root, n_train=8, n_test=2, drop_small_subjects=True)
    assert split.dropped == ["bob"] and split.subjects == ["alice", "carol"]
    assert torch.bincount(split.train.labels).tolist() == [8, 8]
    with pytest.raises(ValueError, match="n_test"):
        load_faces(root, n_train=8, n_test=0)


def test_greyscale_and_odd_sized_images_load_as_rgb_at_network_size(tmp_path):
    root = tmp_path / "faces"
    rng = np.random.default_rng(0)
    for subject, (h, w), mode in (("grey", (112, 92), "L"), ("odd", (37, 53), "RGB")):
        (root / subject).mkdir(parents=True)
        for i in range(3):
            shape = (h + i, w) if mode == "L" else (h + 7 * i, w + 3 * i, 3)
            img = Image.fromarray(rng.integers(0, 255, size=shape, dtype=np.uint8), mode)
            img.save(root / subject / f"{i}.{'pgm' if mode == 'L' else 'png'}")
    split = load_faces(root, n_train=2, n_test=1, size=32)
    for part in (split.train, split.test):
        assert part.images.shape[1:] == (32, 32, 3) and part.images.dtype == torch.uint8
    grey = split.train.images[split.train.labels == split.subjects.index("grey")]
    colour = split.train.images[split.train.labels == split.subjects.index("odd")]
    assert torch.equal(grey[..., 0], grey[..., 1]) and torch.equal(grey[..., 1], grey[..., 2])
    assert not torch.equal(colour[..., 0], colour[..., 1])


# --------------------------------------------------------------------------- two-head network
def _image_set(n, num_classes, seed):
    x, y = data.synthetic_images(n, num_classes, seed=seed)
    return ImageSet(torch.from_numpy(x), torch.from_numpy(y).long(), [f"c{i}" for i in range(num_classes)])


def _block(c_in, c_out):
    return nn.Sequential(OrderedDict(conv1=nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                                     bn1=nn.BatchNorm2d(c_out), relu=nn.ReLU()))


def tiny_resnet_like(num_classes=10):
    """A small network named like torchvision's ResNet (conv1, bn1, layer1, layer2, fc) with
    BatchNorm everywhere, so the tests run in seconds."""
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), bn1=nn.BatchNorm2d(8), relu=nn.ReLU(),
        layer1=nn.Sequential(_block(8, 8)), layer2=nn.Sequential(_block(8, 16), _block(16, 16)),
        avgpool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(16, num_classes)))


@pytest.fixture
def network_and_tasks():
    """A small trained-network stand-in with 10 old classes, and tiny new (4 classes) and
    old (10 classes) tasks."""
    torch.manual_seed(0)
    network = tiny_resnet_like()
    tasks = L.make_tasks(_image_set(16, 4, 1), _image_set(8, 4, 2), _image_set(20, 10, 3), _image_set(20, 10, 4),
                         batch_size=8, mean=MEAN, std=STD, device="cpu")
    return network, tasks


def _changed(before: dict, after: dict) -> set:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_two_head_net_keeps_the_original_and_returns_both_heads(network_and_tasks):
    network, _ = network_and_tasks
    original = {k: v.clone() for k, v in network.state_dict().items()}
    model = L.TwoHeadNet(network, 4).eval()
    x = torch.randn(2, 3, 32, 32)
    new, old = model(x)
    assert new.shape == (2, 4) and old.shape == (2, 10)
    assert torch.allclose(old, network.eval()(x), atol=1e-5)  # the old head is the original classifier
    assert not _changed(original, network.state_dict())
    assert torch.equal(L.TwoHeadNet(network, 4).new_head.weight, model.new_head.weight)  # same seed, same head


@pytest.mark.parametrize("update_bn_stats", [False, True])
def test_feature_extraction_changes_only_the_new_head(network_and_tasks, update_bn_stats):
    network, tasks = network_and_tasks
    model = L.TwoHeadNet(network, 4, update_bn_stats=update_bn_stats)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    record = L.adapt(model, "feature_extraction", tasks, run=Run("part4", "fe", "smoke"), recipe=Recipe(2, lr=0.1),
                     runtime=CPU)
    changed = _changed(before, model.state_dict())
    # BatchNorm running statistics of the frozen trunk are unchanged too (frozen BN stays in eval mode).
    assert changed == {"new_head.weight", "new_head.bias"}
    assert record["n_trainable"] == 16 * 4 + 4
    assert all(h["old_test_top1"] is not None for h in record["history"])
    assert set(record["final"]) >= {"new_train_top1", "new_test_top1", "old_train_top1", "old_test_top1"}


def test_fine_tuning_trains_the_chosen_layers_at_their_rate(network_and_tasks):
    network, tasks = network_and_tasks
    model = L.TwoHeadNet(network, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    groups = L.configure(model, "fine_tuning", "layer2.1.conv1, layer1", lr_percent=10)
    table = L.rate_table(model, groups, lr=0.1)
    assert table["layer"].tolist() == ["layer2.1.conv1", "layer1", "new_head", "(frozen: everything else)"]
    assert table["lr"].tolist() == pytest.approx([0.01, 0.01, 0.1, 0.0])
    assert table["parameters"].sum() == sum(p.numel() for p in model.parameters())
    L.adapt(model, "fine_tuning", tasks, run=Run("part4", "ft", "smoke"), recipe=Recipe(1, lr=0.1),
            layers="layer2.1.conv1, layer1", lr_percent=10, runtime=CPU)
    changed = _changed(before, model.state_dict())
    assert {"trunk.layer2.1.conv1.weight", "trunk.layer1.0.conv1.weight", "trunk.layer1.0.bn1.weight",
            "new_head.weight"} <= changed
    frozen = {k for k in before if k.startswith(("trunk.conv1", "trunk.bn1", "trunk.layer2.0", "trunk.layer2.1.bn1",
                                                 "old_head"))}
    assert len(frozen) > 10 and not frozen & changed
    assert not {k for k in changed if "running" in k}  # by default no BatchNorm statistics move


def test_update_bn_stats_moves_the_statistics_of_trained_layers_only(network_and_tasks):
    network, tasks = network_and_tasks
    model = L.TwoHeadNet(network, 4, update_bn_stats=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    L.adapt(model, "fine_tuning", tasks, run=Run("part4", "ft_bn", "smoke"), recipe=Recipe(1, lr=0.1),
            layers="layer1", runtime=CPU, final=False, track_old=False)
    moved = {k for k in _changed(before, model.state_dict()) if "running" in k}
    assert moved == {"trunk.layer1.0.bn1.running_mean", "trunk.layer1.0.bn1.running_var"}


def test_configure_rejects_unknown_and_overlapping_layers(network_and_tasks):
    model = L.TwoHeadNet(network_and_tasks[0], 4)
    with pytest.raises(ValueError, match="layer9"):
        L.configure(model, "fine_tuning", "layer9")
    with pytest.raises(ValueError, match="overlaps"):
        L.configure(model, "fine_tuning", "layer2, layer2.1.conv1")
    with pytest.raises(ValueError, match="at least one layer"):
        L.configure(model, "fine_tuning", "")
    with pytest.raises(ValueError, match="lr_percent"):
        L.configure(model, "lwf", lr_percent=0)


def test_lwf_records_responses_of_the_network_before_any_update(network_and_tasks):
    network, tasks = network_and_tasks
    model = L.TwoHeadNet(network, 4)
    untouched = L.TwoHeadNet(network, 4).eval()
    run = Run("part4", "lwf", "smoke")
    warmup, record = L.learning_without_forgetting(
        model, tasks, run=run, warmup_run=Run("part4", "lwf_warmup", "smoke"), recipe=Recipe(1, lr=0.1),
        warmup_epochs=1, lr_percent=50, T=2.0, lambda0=1.0, runtime=CPU)
    recorded = load_checkpoint(run.checkpoint_path)["objective"]["teacher.recorded"]
    with torch.no_grad():
        expected = torch.cat([untouched(x)[1] for x, _, _ in tasks.new_train_eval])
        after = torch.cat([model.eval()(x)[1] for x, _, _ in tasks.new_train_eval])
    assert torch.allclose(recorded, expected, atol=1e-5)
    assert not torch.allclose(after, expected, atol=1e-3)  # the joint step did change the old head's outputs
    assert record["method"] == "LwF" and record["warmup_run"] == "part4/lwf_warmup"
    assert "train_lwf" in record["history"][0] and "old_test_top1" in record["history"][0]
    assert warmup["n_trainable"] == 16 * 4 + 4 and "final" not in warmup


def test_lwf_distillation_vanishes_when_the_old_head_matches_its_recording(network_and_tasks):
    network, tasks = network_and_tasks
    model = L.TwoHeadNet(network, 4)
    objective = L.lwf_objective(model, tasks, lambda0=1.0, T=2.0)
    L.configure(model, "lwf")
    model.train()  # as in the joint phase: the fixed BatchNorm statistics keep the outputs equal to the recordings
    x, y, index = next(iter(tasks.new_train))  # augmented batch: its index picks its own recordings
    plain = tasks.new_train_eval.make_batch(index)[0]
    with torch.no_grad():
        new, old = model(plain)
    old = old.clone().requires_grad_(True)
    loss, parts = objective((new, old), Batch(x, y, index))
    loss.backward()
    assert parts["lwf"].item() == pytest.approx(0.0, abs=1e-6)
    assert old.grad.abs().max().item() < 1e-7
    moved = (old.detach() + torch.randn_like(old)).requires_grad_(True)
    loss2, parts2 = objective((new, moved), Batch(x, y, index))
    loss2.backward()
    assert parts2["lwf"].item() > 1e-3 and loss2.item() > loss.item()
    assert moved.grad.abs().max().item() > 1e-4


def test_reference_record_evaluates_the_old_task_only(network_and_tasks):
    network, tasks = network_and_tasks
    record = L.reference_record(network, tasks, Run("part4", "original", "smoke"), device="cpu")
    assert set(record["final"]) == {"old_train_top1", "old_train_loss", "old_test_top1", "old_test_loss"}
    assert record["status"] == "complete"


def test_fine_tuning_defaults_to_the_last_two_stages_of_either_teacher():
    from kdutils.models import build_model

    assert L.last_two_stages(build_model("resnet18_cifar_8x8", 10, weights=None)) == ["layer3", "layer4"]
    stand_in = build_model("resnet20", 10)  # the quick profile's stand-in teacher of part 3
    layers = L.last_two_stages(stand_in)
    assert layers == ["stages.1", "stages.2"]
    net = L.TwoHeadNet(stand_in, 5)
    groups = L.configure(net, "fine_tuning", layers, lr_percent=10)
    assert [g["name"] for g in groups if g["name"] in layers] == layers
    with pytest.raises(ValueError, match="finetune_layers"):
        L.last_two_stages(torch.nn.Linear(2, 2))


def _final(run, old, new, status="complete"):
    return {"part": "part4", "run": run, "status": status,
            "final": {"old_test_top1": old, "new_test_top1": new, "old_train_top1": old + 5, "new_train_top1": new + 5}}


def test_findings_and_seed_summary_judge_lwf_over_seeds():
    recs = [_final("original", 60.0, 0.0)]
    recs += [_final(f"feature_extraction{'_seed%d' % s if s else ''}", 60.0, v) for s, v in enumerate((50, 52, 54))]
    recs += [_final(f"fine_tuning_layer4_lr10pct{'_seed%d' % s if s else ''}", o, 70.0)
             for s, o in enumerate((30.0, 34.0, 38.0))]
    recs += [_final(f"lwf_T2_lambda01_lr10pct{'_seed%d' % s if s else ''}", o, 71.0 + s)
             for s, o in enumerate((55.0, 56.0, 57.0))]
    table = L.seed_summary(recs)
    assert list(table.index) == ["original", "feature extraction", "fine-tuning", "LwF"]
    assert table.loc["fine-tuning", "seeds"] == 3 and table.loc["fine-tuning", "old test top-1 mean"] == 34.0
    assert table.loc["fine-tuning", "old test top-1 std"] == pytest.approx(4.0)
    text = " ".join(L.findings(recs))
    # LwF keeps the old task: +22 points over fine-tuning, spread sqrt(1 + 16) = 4.12 -> real
    assert "Old task: LwF 56.00 ± 1.00 (3 seeds) vs fine-tuning 34.00 ± 4.00 (3 seeds): +22.00 points, real" in text
    # New task: +2 points over fine-tuning, spread sqrt(1 + 0) = 1 -> real
    assert "New task: LwF 72.00 ± 1.00 (3 seeds) vs fine-tuning 70.00 ± 0.00 (3 seeds): +2.00 points, real" in text
    # Old task vs feature extraction (which cannot forget): -4 points, spread 1 -> real loss
    assert "LwF 56.00 ± 1.00 (3 seeds) vs feature extraction 60.00 ± 0.00 (3 seeds): -4.00 points, real" in text
    assert "the original network 60.00%" in text
    single = " ".join(L.findings([_final("lwf_T2_lambda01_lr10pct", 55.0, 70.0), _final("fine_tuning_x", 40.0, 70.0)]))
    assert "no seed spread" in single


# --------------------------------------------------------------------------- the rate, chosen on validation
def test_hold_out_keeps_per_subject_counts_disjoint_and_refuses_to_empty_a_subject():
    train = _image_set(30, 3, 5)  # 10 images per class
    fit_set, val = L.hold_out(train, 2, seed=0)
    assert torch.bincount(val.labels, minlength=3).tolist() == [2, 2, 2]
    assert torch.bincount(fit_set.labels, minlength=3).tolist() == [8, 8, 8]
    keys = lambda s: {img.numpy().tobytes() for img in s.images}  # noqa: E731
    assert not keys(fit_set) & keys(val) and len(keys(fit_set) | keys(val)) == 30
    again_fit, again_val = L.hold_out(train, 2, seed=0)
    assert torch.equal(again_val.images, val.images) and torch.equal(again_fit.images, fit_set.images)
    assert not torch.equal(L.hold_out(train, 2, seed=1)[1].images, val.images)
    with pytest.raises(ValueError, match="leaves none to train on"):
        L.hold_out(train, 10)


def test_unseen_images_leave_out_what_the_original_network_trained_on():
    pool = _image_set(100, 10, 6)  # 10 per class
    seen = pool.per_class(6)
    unseen = L.unseen_images(pool, seen, 3)
    assert torch.bincount(unseen.labels, minlength=10).tolist() == [3] * 10
    seen_keys = {img.numpy().tobytes() for img in seen.images}
    assert not any(img.numpy().tobytes() in seen_keys for img in unseen.images)
    assert torch.equal(L.unseen_images(pool, seen, 3).images, unseen.images)  # deterministic
    with pytest.raises(ValueError, match="at most 4 image"):
        L.unseen_images(pool, seen, 5)


def test_rank_rates_scores_the_mean_of_both_tasks_of_its_methods_and_breaks_ties_low():
    def row(ft_old, ft_new, lwf_old, lwf_new):
        return {"fine_tuning": {"old": ft_old, "new": ft_new}, "lwf": {"old": lwf_old, "new": lwf_new}}

    nan = float("nan")
    table, chosen = L.rank_rates({10.0: row(40, 30, 50, 30), 1.0: row(60, 10, 60, 12), 3.0: row(58, 20, 59, 23),
                                  30.0: row(50, 30, nan, nan)})
    assert table["lr_percent"].tolist() == [1.0, 3.0, 10.0, 30.0]  # rate order
    assert table["score"].tolist()[:3] == pytest.approx([35.5, 40.0, 37.5])
    assert chosen == 3.0 and table["chosen"].tolist() == [False, True, False, False]
    assert table["rank"].tolist() == [3, 1, 2, 4]  # a diverged run ranks its candidate last
    _, tie = L.rank_rates({30.0: row(50, 30, 50, 30), 3.0: row(40, 40, 40, 40)})
    assert tie == 3.0  # equal scores: the lower rate
    fe = {"feature_extraction": {"old": 60.0, "new": 20.0}}
    lr_table, lr = L.rank_rates({0.1: fe, 1.0: {"feature_extraction": {"old": 60.0, "new": 31.0}}}, "lr")
    assert lr == 1.0 and lr_table.columns[0] == "lr" and lr_table["score"].tolist() == [40.0, 45.5]
    with pytest.raises(ValueError, match="at least one"):
        L.rank_rates({})
    with pytest.raises(ValueError, match="every candidate lr_percent diverged"):
        L.rank_rates({1.0: row(nan, nan, nan, nan)})


def _selection_setup(**changes):
    from kdutils.core.profiles import Setup

    settings = dict(L.SETTINGS["smoke"], epochs=1, warmup_epochs=1, batch_size=8, **changes)
    return Setup(profile="smoke", data_root=None, settings=settings, headless=True)


def test_select_rates_trains_on_held_out_training_images_only(network_and_tasks, tmp_path):
    network, tasks = network_and_tasks
    setup = _selection_setup(val_per_subject=1)
    faces_train, old_pool = _image_set(16, 4, 1), _image_set(40, 10, 7)
    old_val = L.unseen_images(old_pool, old_pool.per_class(2), 1)
    val_tasks = L.selection_tasks(setup, faces_train, old_val, mean=MEAN, std=STD, device="cpu")
    assert val_tasks.held_out == "val" and len(val_tasks.new_train.labels) == 12 and len(val_tasks.new_test.labels) == 4
    adaptation = L.Adaptation(setup, network, tasks, tmp_path / "faces", 4, ["layer2"], device="cpu")
    assert (adaptation.lr, adaptation.lr_percent) == (setup["lr"], setup["lr_percent"])  # None: the profile's
    with pytest.raises(ValueError, match="validation images only"):
        L.select_rates(adaptation, tasks, [0.05], [1.0])
    lr_table, pct_table, (lr, pct), original_old_val = L.select_rates(adaptation, val_tasks, [0.05, 0.2], [1.0, 50.0])
    assert lr_table["lr"].tolist() == [0.05, 0.2] and lr_table["chosen"].sum() == 1
    assert lr == lr_table.loc[lr_table["chosen"], "lr"].item() and pct in (1.0, 50.0)
    assert lr_table["feature extraction old val"].tolist() == pytest.approx([original_old_val] * 2)  # cannot forget
    from kdutils.core import records as R

    recs = {r["run"]: r for r in R.load_records(L.SELECT_PART, "smoke")}
    lead = f"lr{lr:g}_"
    assert set(recs) == {"lr0.05_feature_extraction", "lr0.2_feature_extraction", "original", f"{lead}lwf_warmup_1ep",
                         f"{lead}fine_tuning_layer2_lr1pct", f"{lead}fine_tuning_layer2_lr50pct",
                         f"{lead}lwf_T2_lambda01_lr1pct", f"{lead}lwf_T2_lambda01_lr50pct"}
    ft = recs[f"{lead}fine_tuning_layer2_lr50pct"]
    assert set(ft["final"]) == {"new_train_top1", "new_train_loss", "new_val_top1", "new_val_loss", "old_val_top1",
                                "old_val_loss"}  # nothing measured on a test image
    assert ft["evaluated_on"] == "validation" and "old_val_top1" in ft["history"][-1] and ft["params"]["lr"] == lr
    assert [g["lr"] for g in ft["layer_rates"] if g["layer"] == "layer2"] == [pytest.approx(lr * 0.5)]
    assert pct_table.loc[pct_table["lr_percent"] == 50.0, "fine-tuning new val"].item() == ft["final"]["new_val_top1"]
    assert not list(R.load_records("part4", "smoke"))  # the method runs' table stays apart
    words = L.selection_words(pct_table, (lr, pct), (0.05, 1.0), original_old_val)
    assert ("the chosen rates" in words) == ((lr, pct) == (0.05, 1.0))


def test_quick_rates_are_among_their_candidates_and_full_keeps_the_assignments():
    quick, full = L.SETTINGS["quick"], L.SETTINGS["full"]
    assert quick["lr_percent"] in quick["lr_percent_candidates"] and quick["lr"] in quick["lr_candidates"]
    assert (full["lr"], full["lr_percent"]) == (0.05, 10.0) and not full["lr_percent_candidates"]
    assert quick["val_per_subject"] < quick["n_train"]


def test_findings_state_forgetting_and_a_verdict():
    recs = [_final("original", 60.0, 0.0)]
    recs += [_final(f"feature_extraction{'_seed%d' % s if s else ''}", 60.0, 15.0 + s) for s in range(3)]
    recs += [_final(f"fine_tuning_x{'_seed%d' % s if s else ''}", o, 20.0 + s) for s, o in enumerate((40.0, 44.0, 48.0))]
    recs += [_final(f"lwf_T2_lambda01_lr10pct{'_seed%d' % s if s else ''}", o, 20.0 + s)
             for s, o in enumerate((58.0, 59.0, 60.0))]
    text = " ".join(L.findings(recs))
    assert "feature extraction +0.00 points (unchanged in every seed)" in text
    assert "fine-tuning +16.00 points (beyond its seed spread ±4.00)" in text
    assert "LwF +1.00 points (within its seed spread ±1.00)" in text
    assert "on the old task: it keeps more of it" in text and "on the new task: no clear difference" in text
    worse = [_final(r["run"], r["final"]["old_test_top1"] - (30 if r["run"].startswith("lwf") else 0),
                    r["final"]["new_test_top1"]) for r in recs]  # LwF 29 ± 1 vs fine-tuning 44 ± 4
    assert "it keeps less of it" in " ".join(L.findings(worse))
