"""kdutils.core.counting: parameters and FLOPs by hand."""
from torch import nn

from kdutils.core.counting import count_flops, count_macs, count_params


def test_count_params_and_flops_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    assert count_params(net) == 3 * 4 * 9 + 2 * 4 + 144 * 5 + 5
    net[0].weight.requires_grad_(False)
    assert count_params(net) == 3 * 4 * 9 + 8 + 725  # frozen parameters still count
    assert count_params(net, trainable_only=True) == 8 + 725
    lin = nn.Linear(10, 7)
    assert count_flops(lin, (1, 10)) == 2 * 10 * 7
    assert count_macs(lin, (1, 10)) == 70
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_flops(conv, (2, 3, 5, 5)) == 2 * 2 * (8 * 5 * 5) * (3 * 9)  # batch of 2


def test_shared_parameters_count_once():
    lin = nn.Linear(4, 4)
    shared = nn.Sequential(lin, nn.ReLU(), lin)
    assert count_params(shared) == count_params(lin) == 20
