"""CIFAR ResNet family: shapes, exact parameter counts, attention costs, budget, ablation path."""
import functools

import pytest
import torch

from kdutils.models import available_models, build_model, count_flops, count_params
from kdutils.models import cifar_resnet as cr

RESNET18_BLOCK_WIDTHS = [64, 64, 128, 128, 256, 256, 512, 512]


def se_params(c: int, r: int = 16) -> int:
    """Two FCs with bias: C -> C//r -> C."""
    return 2 * c * (c // r) + c // r + c


def cbam_params(c: int, r: int = 16, k: int = 7) -> int:
    """Shared bias-free MLP C -> C//r -> C, plus a k x k conv 2 -> 1 without bias."""
    return 2 * c * (c // r) + 2 * k * k


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_names_are_registered():
    assert set(cr.MODEL_NAMES) <= set(available_models())
    for name in ["resnet18", "resnet34", "preact_resnet18", "se_resnet18", "cbam_resnet18",
                 "proposal"]:
        assert name in cr.MODEL_NAMES


@pytest.mark.parametrize("num_classes", [100, 10])
@pytest.mark.parametrize("name", cr.MODEL_NAMES)
def test_forward_shape(name, num_classes):
    model = build_model(name, num_classes).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


def test_resnet18_parameter_count_is_the_known_figure():
    assert count_params(build_model("resnet18", 100)) == 11_220_132
    assert count_params(build_model("resnet18", 10)) == 11_173_962


def test_small_student_is_under_one_million():
    assert count_params(build_model("wrn_16_2", 100)) < 1_000_000


def test_wrn_28_2_lies_between_the_part2_pair_and_is_the_generic_wrn():
    sizes = [count_params(build_model(n, 100)) for n in ("wrn_16_2", "wrn_28_2", "wrn_40_2")]
    assert sizes == [703_284, 1_479_220, 2_255_156]  # each 6 blocks deeper adds the same 775,936
    assert sizes[1] == count_params(build_model("wrn", 100, depth=28, widen_factor=2))


@pytest.mark.parametrize("name,unit_params", [("se_resnet18", se_params),
                                              ("cbam_resnet18", cbam_params)])
def test_attention_adds_exactly_the_formula(name, unit_params):
    base = count_params(build_model("resnet18", 100))
    expected = sum(unit_params(c) for c in RESNET18_BLOCK_WIDTHS)
    assert count_params(build_model(name, 100)) - base == expected
    # The same unit through the generic option:
    attention = name.split("_")[0]
    assert count_params(build_model("resnet18", 100, attention=attention)) - base == expected


def test_attention_is_pluggable():
    base = count_params(build_model("resnet18", 100))
    se8 = functools.partial(cr.SqueezeExcitation, reduction=8)
    expected = sum(se_params(c, r=8) for c in RESNET18_BLOCK_WIDTHS)
    assert count_params(build_model("resnet18", 100, attention=se8)) - base == expected
    with pytest.raises(ValueError, match="unknown attention"):
        build_model("resnet18", 100, attention="eca")


def test_attention_units_keep_shape():
    x = torch.randn(2, 32, 8, 8)
    for unit in (cr.SqueezeExcitation(32), cr.CBAM(32)):
        assert unit(x).shape == x.shape


def test_bottleneck_and_backward_with_every_option():
    model = cr.CifarResNet("bottleneck", (1, 1), num_classes=10, widths=(8, 16),
                           attention="cbam", preact=True, drop_rate=0.2)
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    assert model.num_features == 64
    post = cr.CifarResNet(cr.Bottleneck, (1, 1), num_classes=10, widths=(8, 16), attention="se")
    post(torch.randn(2, 3, 16, 16)).sum().backward()


@pytest.mark.parametrize("preact", [False, True])
def test_zero_init_residual_makes_blocks_identities(preact):
    model = build_model("resnet20", 10, preact=preact, attention="se",
                        zero_init_residual=True).eval()
    block = model.stages[0][1]  # 16 -> 16 channels, identity shortcut
    x = torch.rand(2, 16, 8, 8)  # non-negative, like a post-ReLU activation
    with torch.no_grad():
        assert torch.equal(block(x), x)


def test_forward_features():
    model = build_model("resnet18", 10).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, 32, 32))
        logits = model(torch.randn(2, 3, 32, 32))
    assert [tuple(feats[f"stage{i}"].shape[1:]) for i in range(1, 5)] == [
        (64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
    assert feats["pooled"].shape == (2, 512) and logits.shape == (2, 10)


def test_proposal_budget():
    assert count_params(build_model("proposal", 100)) < cr.PROPOSAL_PARAM_BUDGET
    with pytest.raises(ValueError, match="budget of 30,000,000"):
        build_model("proposal", 100, widen_factor=10)  # WRN-28-10: 36.5M


def test_bad_options_raise():
    with pytest.raises(ValueError, match="6n\\+4"):
        build_model("wrn", 10, depth=20)
    with pytest.raises(ValueError, match="drop_rate"):
        build_model("resnet18", 10, drop_rate=1.5)


def test_resnet18_flops():
    flops = count_flops(build_model("resnet18", 100))
    assert 1.0e9 < flops < 1.2e9  # about 0.56 GMACs per 32x32 image


def test_ablation_path():
    rows = cr.ABLATION_PATH
    assert rows[0]["model"] == "resnet18" and rows[0]["options"] == {}
    assert rows[-1]["model"] == "proposal" and rows[-1]["options"] == {}
    models = {"resnet18", "se_resnet18", "cbam_resnet18", "proposal"}
    assert models <= {r["model"] for r in rows}
    for row in rows:
        assert set(row) == {"name", "model", "options", "change"} and row["change"]
        model = build_model(row["model"], 100, **row["options"])
        assert count_params(model) > 0
    for prev, row in zip(rows, rows[1:]):
        assert (prev["model"], prev["options"]) != (row["model"], row["options"])
    assert len({r["name"] for r in rows}) == len(rows)
