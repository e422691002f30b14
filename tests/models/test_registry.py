
import pytest
from torch import nn

from kdutils import models


def test_registry_unknown_name_lists_known():
    with pytest.raises(ValueError) as e:
        models.build_model("no_such_net", 10)
    assert "known models" in str(e.value)


def test_counting_is_reexported_and_the_budget_checked():
    from kdutils.core import counting

    assert models.count_params is counting.count_params and models.count_flops is counting.count_flops
    lin = nn.Linear(10, 7)
    assert models.check_param_budget(lin, 77) == 77
    with pytest.raises(ValueError, match="over the budget"):
        models.check_param_budget(lin, 50)



def test_build_model_with_a_seed_gives_the_same_weights_and_keeps_the_callers_random_state():
    """Issue 13: notebooks built models before any seed was set, so fresh processes started apart."""
    import torch

    from kdutils.models import build_model

    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = build_model("student_cnn", 10, seed=7)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's random stream is untouched
    b = build_model("student_cnn", 10, seed=7)
    c = build_model("student_cnn", 10, seed=8)
    for (name, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))
