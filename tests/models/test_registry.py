
import pytest
from torch import nn

from kdutils import models


def test_registry_unknown_name_lists_known():
    with pytest.raises(ValueError) as e:
        models.build_model("no_such_net", 10)
    assert "known models" in str(e.value)


def test_count_params_and_flops_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    assert models.count_params(net) == 3 * 4 * 9 + 2 * 4 + 144 * 5 + 5
    net[0].weight.requires_grad_(False)
    assert models.count_params(net) == 3 * 4 * 9 + 8 + 725  # frozen parameters still count
    assert models.count_params(net, trainable_only=True) == 8 + 725
    lin = nn.Linear(10, 7)
    assert models.count_flops(lin, (1, 10)) == 2 * 10 * 7
    assert models.count_macs(lin, (1, 10)) == 70
    with pytest.raises(ValueError, match="over the budget"):
        models.check_param_budget(lin, 50)

