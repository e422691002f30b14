"""kdutils.compress.prune: magnitude and channel pruning, sparsity, iterative pruning."""
import pytest
import torch
from torch import nn

from kdutils.compress import prune
from kdutils.models import build_model


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _student():
    return build_model("food_student", num_classes=11)


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_prune_reaches_requested_sparsity(scope):
    model = _student()
    keys = set(model.state_dict())
    assert prune.sparsity(model) == 0
    prune.prune_magnitude(model, 0.6, scope=scope)
    assert abs(prune.sparsity(model) - 0.6) <= 0.01
    prune.remove_pruning(model)
    assert set(model.state_dict()) == keys  # no weight_orig / weight_mask left
    assert abs(prune.sparsity(model) - 0.6) <= 0.01


def test_prune_rejects_bad_amount():
    with pytest.raises(ValueError, match="amount"):
        prune.prune_magnitude(_student(), 1.5)


def test_prune_channels_zeroes_whole_filters_but_not_depthwise():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Flatten(), nn.Linear(8, 2))
    prune.prune_channels(model, 0.5)
    filters = model[0].weight.detach().flatten(1)
    assert int((filters.abs().sum(1) == 0).sum()) == 4  # half of the 8 filters, each entirely zero
    assert not hasattr(model[1], "weight_mask")  # depthwise: skipped
    assert not hasattr(model[3], "weight_mask")  # Linear: structured pruning is for convolutions
    assert prune.count_nonzero_params(model) < sum(p.numel() for p in model.parameters())


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
    history = prune.iterative_prune(model, rate, steps, fine_tune, evaluate)
    assert [h["step"] for h in history] == list(range(steps + 1))
    sp = [h["sparsity"] for h in history]
    assert sp[0] == 0 and all(b > a for a, b in zip(sp, sp[1:]))
    assert abs(sp[-1] - (1 - (1 - rate) ** steps)) <= 0.01
    nz = [h["nonzero_params"] for h in history]
    assert all(b < a for a, b in zip(nz, nz[1:]))
    assert all(0 <= h["accuracy"] <= 1 for h in history)


# --------------------------------------------------------------------------- removing channels (DepGraph)
CHANNEL_MODELS = [  # depthwise/pointwise blocks; residual sums (post- and pre-activation); a plain CNN
    ("food_student", {}, 64),
    ("resnet20", {}, 32),
    ("wrn_16_2", {}, 32),
    ("student_cnn", {"pool_stride": 2}, 32),
]


@pytest.mark.parametrize("arch, options, side", CHANNEL_MODELS)
def test_remove_channels_gives_a_smaller_model_that_reloads_without_masks(arch, options, side, tmp_path):
    pytest.importorskip("torch_pruning")
    from kdutils.core.counting import count_flops, count_params

    model = build_model(arch, 10, **options).eval()
    x = torch.randn(2, 3, side, side)
    params, flops = count_params(model), count_flops(model, (1, 3, side, side))
    prune.remove_channels(model, x, 0.3)
    assert count_params(model) < 0.75 * params and count_flops(model, (1, 3, side, side)) < 0.75 * flops
    assert model(x).shape == (2, 10)  # the classes are kept
    for m in model.modules():  # depthwise convolutions stay depthwise
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            assert m.groups == m.in_channels == m.out_channels == m.weight.shape[0]

    path = tmp_path / "pruned.pt"
    nbytes = prune.save_pruned(model, path, {"arch": arch})
    saved = torch.load(path, weights_only=True)  # plain tensors and dicts
    assert not any(k.endswith(("_mask", "_orig")) for k in saved["state"])
    assert nbytes == path.stat().st_size
    restored = prune.load_pruned(path, build_model(arch, 10, **options)).eval()
    assert count_params(restored) == count_params(model)
    assert torch.equal(restored(x), model(x))
    assert prune.read_pruned_meta(path) == {"arch": arch, "params": count_params(model)}


def test_iterative_channel_pruning_shrinks_every_step():
    pytest.importorskip("torch_pruning")
    model = _student()
    x = torch.randn(2, 3, 32, 32)
    history = prune.iterative_prune(model, 0.25, 2, None, lambda m: {"width": m.num_features}, method="channels",
                                    example_inputs=x)
    params = [h["params"] for h in history]
    assert params[0] > params[1] > params[2] and all(h["method"] == "channels" for h in history)
    assert history[0]["sparsity"] == 0 and history[-1]["nonzero_params"] <= params[-1]
    assert model.classifier[-1].in_features < 256 and model.classifier[-1].out_features == 11
    with pytest.raises(ValueError, match="example_inputs"):
        prune.iterative_prune(_student(), 0.25, 1, None, lambda m: 0.0, method="channels")
    with pytest.raises(ValueError, match="method"):
        prune.iterative_prune(_student(), 0.25, 1, None, lambda m: 0.0, method="random")


def test_load_pruned_refuses_other_files_and_save_refuses_masks(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(_student().state_dict(), path)
    with pytest.raises(ValueError, match="save_pruned"):
        prune.load_pruned(path, _student())
    masked = prune.prune_magnitude(_student(), 0.5)
    with pytest.raises(ValueError, match="remove_pruning"):
        prune.save_pruned(masked, tmp_path / "masked.pt")
