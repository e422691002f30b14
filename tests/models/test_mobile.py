"""kdutils.models.mobile: the food-11 student under its parameter budget, the three block kinds
(ordinary, depthwise-separable, group convolution) and the width matching of the comparison nets."""
import pytest
import torch
from torch import nn

from kdutils.models import available_models, build_model, count_params
from kdutils.models.mobile import (
    ConvBlock,
    DepthwiseSeparable,
    GroupConvBlock,
    match_width,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _student():
    return build_model("food_student", num_classes=11)


# --------------------------------------------------------------------------- counting, budgets
def test_count_params_matches_hand_count():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),  # 3*8*3*3 weights + 8 biases = 224
        nn.BatchNorm2d(8),  # weight + bias = 16 (running stats are buffers)
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),  # 8*10 + 10 = 90
    )
    assert count_params(model) == 224 + 16 + 90


def test_models_are_registered():
    assert {"food_student", "conv_net", "dwsep_net", "group_net"} <= set(available_models())


def test_food_student_within_budget_and_forward_shape():
    model = _student().eval()
    n = count_params(model)
    assert 90_000 <= n <= 100_000
    with torch.no_grad():
        assert model(torch.randn(2, 3, 128, 128)).shape == (2, 11)


def test_food_student_over_budget_raises():
    with pytest.raises(ValueError, match="budget of 100,000"):
        build_model("food_student", num_classes=11, width=2.0)


# --------------------------------------------------------------------------- block formulas
def test_depthwise_separable_param_formula():
    k, cin, cout = 3, 16, 32
    block = DepthwiseSeparable(cin, cout, stride=2)
    depthwise = k * k * cin  # one k x k filter per input channel, no bias (BN follows)
    pointwise = cin * cout  # 1x1 conv mixing channels
    bn = 2 * cin + 2 * cout  # weight + bias of the two BatchNorms
    assert count_params(block) == depthwise + pointwise + bn
    assert block.depthwise[0].groups == cin
    assert block(torch.randn(1, cin, 8, 8)).shape == (1, cout, 4, 4)


@pytest.mark.parametrize("groups", [2, 4, 8])
def test_group_conv_param_formula(groups):
    k, cin, cout = 3, 16, 32
    block = GroupConvBlock(cin, cout, stride=1, groups=groups)
    assert count_params(block) == k * k * cin * cout // groups + 2 * cout
    assert block(torch.randn(1, cin, 8, 8)).shape == (1, cout, 8, 8)


def test_conv_block_param_formula():
    assert count_params(ConvBlock(16, 32)) == 3 * 3 * 16 * 32 + 2 * 32


@pytest.mark.parametrize("groups", [1, 16, 3])  # ordinary, depthwise, not a divisor
def test_group_conv_rejects_bad_groups(groups):
    with pytest.raises(ValueError, match="groups"):
        GroupConvBlock(16, 32, groups=groups)


def test_match_width_gives_matching_counts():
    target = 250_000
    counts = {}
    for kind in ("conv", "dwsep", "group"):
        width = match_width(kind, target, num_classes=11)
        counts[kind] = count_params(build_model(f"{kind}_net", num_classes=11, width=width))
    assert max(counts.values()) <= 1.05 * min(counts.values()), counts
    for n in counts.values():
        assert abs(n - target) <= 0.05 * target
    with torch.no_grad():
        out = build_model("group_net", 11).eval()(torch.randn(1, 3, 128, 128))
    assert out.shape == (1, 11)
