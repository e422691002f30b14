"""Part 5: efficient blocks, parameter budgets, quantization, pruning, leaderboard file."""
import csv

import pytest
import torch
from torch import nn

from kdutils import compress as C
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


# --------------------------------------------------------------------------- quantization
def test_quantize_round_trip_error_bound():
    state = dict(_student().state_dict())
    for k, v in state.items():  # BN weights/biases start constant: give them spread
        if v.is_floating_point():
            state[k] = torch.randn_like(v) * (1 + 10 * torch.rand(()))
    state["constant"] = torch.full((5, 3), 0.75)
    state["counter"] = torch.tensor(7)

    restored = C.dequantize_minmax(C.quantize_minmax(state))
    assert list(restored) == list(state)
    for k, v in state.items():
        r = restored[k]
        assert r.dtype == v.dtype and r.shape == v.shape, k
        if not v.is_floating_point():
            assert torch.equal(r, v), k
            continue
        half_step = float(v.max() - v.min()) / 255 / 2
        eps = 1e-6 * max(1.0, float(v.abs().max()))
        assert float((r - v).abs().max()) <= half_step + eps, k
    assert torch.equal(restored["constant"], state["constant"])


def test_quantized_file_is_4x_smaller_and_loads(tmp_path):
    model = _student().eval()
    assert count_params(model) >= 50_000
    f32 = C.save_state(model, tmp_path / "f32.pt")
    q8 = C.save_quantized(model, tmp_path / "q8.pt")
    f16 = C.save_state(model, tmp_path / "f16.pt", dtype=torch.float16)
    assert f32 == C.file_size(tmp_path / "f32.pt")
    assert 3.5 <= f32 / q8 <= 4.1, (f32, q8)
    assert 1.8 <= f32 / f16 <= 2.1, (f32, f16)

    # weights_only=True must be able to read both formats
    assert torch.load(tmp_path / "q8.pt", weights_only=True)["format"] == C.QFORMAT
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        ref = model(x)
        for path, loader in (("q8.pt", C.load_quantized), ("f16.pt", C.load_state)):
            other = loader(tmp_path / path, _student().eval())
            assert next(other.parameters()).dtype == torch.float32
            assert torch.allclose(other(x), ref, atol=0.15), path


def test_model_size_bytes_counts_buffers_too():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    # 15 + 6 parameters and 6 running stats in float32, num_batches_tracked int64
    assert C.model_size_bytes(model) == (15 + 6 + 6) * 4 + 8


def test_fp16_state_keeps_integer_buffers():
    half = C.to_float16(_student().state_dict())
    assert half["stem.0.weight"].dtype == torch.float16
    assert half["stem.1.num_batches_tracked"].dtype == torch.int64


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_torch_dynamic_int8_runs_or_explains():
    model = _student().eval()
    try:
        q = C.torch_dynamic_int8(model)
    except RuntimeError as e:
        pytest.skip(str(e))
    with torch.no_grad():
        assert q(torch.randn(1, 3, 128, 128)).shape == (1, 11)


# --------------------------------------------------------------------------- pruning
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_prune_reaches_requested_sparsity(scope):
    model = _student()
    keys = set(model.state_dict())
    assert C.sparsity(model) == 0
    C.prune_magnitude(model, 0.6, scope=scope)
    assert abs(C.sparsity(model) - 0.6) <= 0.01
    C.remove_pruning(model)
    assert set(model.state_dict()) == keys  # no weight_orig / weight_mask left
    assert abs(C.sparsity(model) - 0.6) <= 0.01


def test_prune_rejects_bad_amount():
    with pytest.raises(ValueError, match="amount"):
        C.prune_magnitude(_student(), 1.5)


def test_iterative_prune_records_increasing_sparsity():
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 11)
    )
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 11, (8,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def fine_tune(m):  # one step: pruned weights must stay zero
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()

    def evaluate(m):
        with torch.no_grad():
            return (m(x).argmax(1) == y).float().mean().item()

    rate, steps = 0.3, 4
    history = C.iterative_prune(model, rate, steps, fine_tune, evaluate)
    assert [h["step"] for h in history] == list(range(steps + 1))
    sp = [h["sparsity"] for h in history]
    assert sp[0] == 0 and all(b > a for a, b in zip(sp, sp[1:]))
    assert abs(sp[-1] - (1 - (1 - rate) ** steps)) <= 0.01
    nz = [h["nonzero_params"] for h in history]
    assert all(b < a for a, b in zip(nz, nz[1:]))
    assert all(0 <= h["accuracy"] <= 1 for h in history)


# --------------------------------------------------------------------------- leaderboard
def test_leaderboard_csv(tmp_path):
    names = [f"test/{i:04d}.jpg" for i in range(20)]
    preds = torch.randint(0, 11, (20,))
    path = C.write_leaderboard_csv(tmp_path / "sub" / "pred.csv", names, preds, num_classes=11)
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
        C.write_leaderboard_csv(tmp_path / "pred.csv", ids, preds, num_classes=11)
    assert not (tmp_path / "pred.csv").exists()
