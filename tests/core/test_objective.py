"""kdutils.core.objective: the objective shape (Batch, Objective) and plain cross-entropy."""
import pytest
import torch
import torch.nn.functional as F

from kdutils.core.objective import (
    Batch,
    CrossEntropy,
    Objective,
    check_positive,
    check_unit,
)


def test_cross_entropy_with_and_without_label_smoothing():
    z, y = torch.randn(4, 5), torch.tensor([0, 1, 2, 4])
    batch = Batch(torch.zeros(4, 3, 2, 2), y)
    loss, parts = CrossEntropy()(z, batch)
    assert loss.item() == pytest.approx(F.cross_entropy(z, y).item()) and set(parts) == {"ce"}
    smooth, _ = CrossEntropy(0.1)((z, torch.zeros(4, 2)), batch)  # a tuple output: its first item
    assert smooth.item() == pytest.approx(F.cross_entropy(z, y, label_smoothing=0.1).item())
    assert "label_smoothing=0.1" in repr(CrossEntropy(0.1))
    with pytest.raises(ValueError, match="label_smoothing"):
        CrossEntropy(1.5)


def test_prepare_checks_the_teacher_and_moves_to_the_device():
    class NeedsTeacher(Objective):
        needs_teacher = True

    with pytest.raises(ValueError, match="teacher source"):
        NeedsTeacher().prepare(torch.device("cpu"), None, False)
    assert CrossEntropy().prepare(torch.device("cpu"), None, False).label_smoothing == 0.0


def test_checks():
    assert check_unit("a", 1) == 1.0 and check_positive("tau", 2) == 2.0
    for bad in (-0.1, 1.1, "x"):
        with pytest.raises(ValueError, match="a must lie"):
            check_unit("a", bad)
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="tau"):
            check_positive("tau", bad)


def test_extra_modules_are_the_trainable_children_except_the_teacher_source():
    from torch import nn

    class WithRegressor(Objective):
        def __init__(self):
            super().__init__(teacher=nn.Linear(3, 3))  # stands in for a source with parameters
            self.regressor = nn.Conv2d(2, 4, 1, bias=False)
            self.frozen = nn.Linear(2, 2).requires_grad_(False)
            self.register_buffer("memory", torch.zeros(5))

    obj = WithRegressor()
    assert list(obj.extra_modules()) == ["regressor"]
    assert obj.extra_parameter_count() == 2 * 4  # the 1x1 conv's weights; teacher and frozen layer left out
    assert CrossEntropy().extra_modules() == {} and CrossEntropy().extra_parameter_count() == 0
