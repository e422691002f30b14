"""End to end: the soft targets carry the teacher's knowledge.

A broken distillation (a teacher-logit table misaligned with the loader's sample indices,
the two terms of the loss swapped, a temperature applied to one side only) can leave every
unit test green and every KD table plausible, because a student also learns from the labels.
These tests train students on the teacher's soft targets *alone* (``alpha = 1``) on small,
learnable synthetic images and check what they learned:

* from a good teacher, the student lands far above chance and near a student trained on the
  labels;
* from a teacher trained on *relabelled* classes (class ``c`` called ``c + 1``), the student
  follows the teacher, not the labels (so the labels cannot be what it learns from);
* from the same teacher logits shuffled across samples (what a misaligned cache gives), the
  student learns nothing (so the sample index really selects the row).
"""
import pytest
import torch
from torch import nn

from kdutils.core import data
from kdutils.core.loader import GpuLoader
from kdutils.core.recipe import Recipe
from kdutils.core.train import Runtime, fit, predict_logits
from kdutils.distill.objectives import KDLoss
from kdutils.distill.teachers import CachedLogits, RecordedLogits, TeacherLogits

CLASSES, SIDE = 10, 12
RECIPE = Recipe(epochs=6, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=0.0, schedule="cosine")


def _net(width: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(4 * width, CLASSES))


def _loaders(shift: int = 0):
    """Train/test loaders of learnable synthetic images; ``shift`` relabels class c as c + shift."""
    x, y = data.synthetic_images(600, CLASSES, size=(SIDE, SIDE), seed=11)
    xt, yt = data.synthetic_images(300, CLASSES, size=(SIDE, SIDE), seed=12)
    y, yt = (torch.from_numpy(v).long() for v in (y, yt))
    kw = dict(batch_size=50, padding=1, flip=True, device="cpu", seed=3)
    train = GpuLoader((torch.from_numpy(x), (y + shift) % CLASSES), train=True, **kw)
    test = GpuLoader((torch.from_numpy(xt), (yt + shift) % CLASSES), train=False, **kw)
    train.raw = torch.from_numpy(x)  # the un-augmented training images, for recorded logits
    return train, test


def _accuracy(model, loader) -> float:
    logits = predict_logits(model, loader, device="cpu", amp=False)
    return 100.0 * (logits.argmax(1) == loader.labels).float().mean().item()


def _train(model, train, test, objective=None) -> nn.Module:
    fit(model, train, test, RECIPE, objective, runtime=Runtime(device="cpu", amp=False, seed=0, log="off"))
    return model


@pytest.fixture(scope="module")
def setting():
    torch.set_num_threads(1)
    train, test = _loaders()
    teacher = _train(_net(16, seed=1), train, test)
    on_labels = _train(_net(4, seed=2), train, test)
    return dict(train=train, test=test, teacher=teacher, on_labels=_accuracy(on_labels, test),
                teacher_acc=_accuracy(teacher, test))


def _soft_only(teacher_source, train, test) -> nn.Module:
    return _train(_net(4, seed=2), train, test, KDLoss(alpha=1.0, tau=4.0, teacher=teacher_source))


def test_soft_targets_alone_teach_the_student(setting):
    s = setting
    assert s["teacher_acc"] > 80, f"the test needs a good teacher, got {s['teacher_acc']:.1f}%"
    student = _soft_only(CachedLogits(TeacherLogits(s["teacher"], s["train"], amp=False, cache=False)),
                         s["train"], s["test"])
    acc = _accuracy(student, s["test"])
    assert acc > 5 * 100 / CLASSES, f"soft targets alone gave {acc:.1f}% (chance {100 / CLASSES:.0f}%)"
    assert acc > s["on_labels"] - 15, f"soft targets alone {acc:.1f}% vs labels {s['on_labels']:.1f}%"


def test_the_student_follows_the_teacher_not_the_labels(setting):
    s = setting
    relabelled_train, relabelled_test = _loaders(shift=1)
    liar = _train(_net(16, seed=1), relabelled_train, relabelled_test)  # believes class c is c + 1
    student = _soft_only(CachedLogits(TeacherLogits(liar, s["train"], amp=False, cache=False)),
                         s["train"], s["test"])
    on_true_labels = _accuracy(student, s["test"])
    as_teacher_says = _accuracy(student, relabelled_test)
    assert as_teacher_says > 4 * 100 / CLASSES, f"the student agrees with its teacher on only {as_teacher_says:.1f}%"
    assert on_true_labels < 20, f"the student matched the labels ({on_true_labels:.1f}%): it did not learn from the teacher"


def test_misaligned_teacher_logits_teach_nothing(setting):
    s = setting
    logits = predict_logits(s["teacher"], GpuLoader((s["train"].raw, s["train"].labels), batch_size=50,
                                                    train=False, device="cpu"), device="cpu", amp=False)
    aligned = _accuracy(_soft_only(RecordedLogits(logits), s["train"], s["test"]), s["test"])
    shuffled = logits[torch.randperm(len(logits), generator=torch.Generator().manual_seed(0))]
    misaligned = _accuracy(_soft_only(RecordedLogits(shuffled), s["train"], s["test"]), s["test"])
    assert aligned > 50, f"recorded logits looked up by sample index taught only {aligned:.1f}%"
    assert misaligned < 25, f"shuffled teacher logits still taught {misaligned:.1f}%: the index is not used"
