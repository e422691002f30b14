import math

import pandas as pd
import pytest

from kdutils.core import seeds as S


def test_seeded_name_keeps_seed_zero_plain():
    assert S.seeded_name("T5_lam0.1", 0) == "T5_lam0.1"
    assert S.seeded_name("T5_lam0.1", 2) == "T5_lam0.1_seed2"


@pytest.mark.parametrize("bad", [3, "0,1", [], [0, 0], [0, -1], [0, True], [0.5]])
def test_check_seeds_rejects_bad_lists(bad):
    with pytest.raises(ValueError, match="seed"):
        S.check_seeds(bad)


def test_mean_std_by_hand():
    mean, std, n = S.mean_std([40.0, 42.0, 44.0, None, math.nan])
    assert (mean, n) == (42.0, 3)
    assert std == pytest.approx(2.0)  # sqrt(((-2)^2 + 0 + 2^2) / 2)
    assert math.isnan(S.mean_std([1.0])[1])
    assert S.mean_std([])[2] == 0


def test_describe():
    assert S.describe([40.0, 42.0, 44.0]) == "42.00 ± 2.00 (3 seeds)"
    assert S.describe([40.0]) == "40.00 (1 seed)"
    assert S.describe([]) == "-"


def test_seed_table_groups_runs():
    runs = pd.DataFrame({"method": ["kd", "kd", "ce", "kd", "ce"], "top1": [50, 52, 40, 54, 42.0]})
    t = S.seed_table(runs, ["method"], ["top1"]).set_index("method")
    assert list(t.index) == ["kd", "ce"]
    assert t.loc["kd", "top1 mean"] == pytest.approx(52.0) and t.loc["kd", "seeds"] == 3
    assert t.loc["ce", "top1 std"] == pytest.approx(math.sqrt(2.0))


def test_difference_is_real_only_beyond_the_spread():
    wide = S.difference([50, 54, 58], [49, 50, 51])  # stds 4 and 1: spread sqrt(17) = 4.12
    assert wide.delta == pytest.approx(4.0) and wide.spread == pytest.approx(math.sqrt(17))
    assert not wide.real and "within the seed spread" in wide.words()
    tight = S.difference([60, 61, 62], [49, 50, 51])
    assert tight.real and "real" in tight.words()
    single = S.difference([60], [50, 51])
    assert not single.known and not single.real and "no seed spread" in single.words()
    with pytest.raises(ValueError):
        S.difference([], [1, 2])


def test_base_name_undoes_seeded_name_and_groups_runs():
    assert S.base_name(S.seeded_name("KD1_T5", 2)) == S.base_name("KD1_T5") == "KD1_T5"
    runs = [{"run": "a"}, {"run": "b_seed1"}, {"run": "a_seed2"}, {"run": "b"}]
    assert {k: [r["run"] for r in v] for k, v in S.group_by_base(runs).items()} == \
        {"a": ["a", "a_seed2"], "b": ["b_seed1", "b"]}


def test_seed_of_inverts_seeded_name():
    for name, seed in (("student", 0), ("student", 2), ("lwf_T2_seed_x", 0), ("kd", 11)):
        assert S.seed_of(S.seeded_name(name, seed)) == seed
