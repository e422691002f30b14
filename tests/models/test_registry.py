
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

