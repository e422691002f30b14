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
