"""The assignment's student CNN (part 3): spatial sizes, layer outputs and exact parameter counts."""
import pytest
import torch
from torch import nn

from kdutils.models import build_model, count_params
from kdutils.models.small_cnn import describe_student, student_spatial_sizes

STUDENT_PARAMS_10 = (
    (5 * 5 * 3 * 32 + 32)  # conv1
    + (3 * 3 * 32 * 64 + 64)  # conv2
    + (3 * 3 * 64 * 128 + 128)  # conv3
    + (128 * 27 * 27 * 500 + 500)  # fc1: 93,312 -> 500
    + (500 * 10 + 10)  # fc2
)


def test_student_shapes_and_param_count():
    model = build_model("student_cnn", 10)
    assert student_spatial_sizes(32, 1) == [30, 29, 29, 28, 28, 27]
    rows = describe_student(model)
    outputs = [r["output"] for r in rows if r["type"] in ("Conv2d", "MaxPool2d", "Flatten", "Linear")]
    assert outputs == ["32x30x30", "32x29x29", "64x29x29", "64x28x28",
                       "128x28x28", "128x27x27", "93312", "500", "10"]
    assert STUDENT_PARAMS_10 == 46_756_294
    assert count_params(model) == STUDENT_PARAMS_10
    fc1 = model.classifier[1]
    assert fc1.in_features == 93_312 and fc1.out_features == 500
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    kinds = [(m.kernel_size, m.stride, m.padding) for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert kinds == [((5, 5), (1, 1), (1, 1)), ((3, 3), (1, 1), (1, 1)), ((3, 3), (1, 1), (1, 1))]
    pools = [(m.kernel_size, m.stride, m.padding) for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert pools == [(2, 1, 0)] * 3


def test_student_pool_stride_2_and_dropout():
    model = build_model("student_cnn", 10, pool_stride=2, dropout=0.5)
    assert student_spatial_sizes(32, 2) == [30, 15, 15, 7, 7, 3]
    expected = 2432 + 18496 + 73856 + (128 * 3 * 3 * 500 + 500) + (500 * 10 + 10)
    assert expected == 676_294
    assert count_params(model) == expected
    assert any(isinstance(m, nn.Dropout) for m in model.modules())
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="pool_stride"):
        build_model("student_cnn", 10, pool_stride=3)
