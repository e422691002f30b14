"""Log-uniform sampling and range refinement for the (T, lambda) search."""
import math

import numpy as np
import pytest

from kdutils.core.hparam import (
    best_trial,
    log_uniform,
    refine_range,
    round_sig,
    sample_pairs,
)


def test_log_uniform_bounds_and_reproducible():
    a = log_uniform(0.01, 100, 500, seed=3)
    b = log_uniform(0.01, 100, 500, seed=3)
    c = log_uniform(0.01, 100, 500, seed=4)
    assert a.shape == (500,)
    assert np.all(a >= 0.01) and np.all(a <= 100)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(log_uniform(2.0, 2.0, 5, seed=0) == 2.0)


def test_log_of_samples_is_uniform():
    low, high = 0.01, 100
    x = log_uniform(low, high, 2000, seed=0)
    geo_mean = math.sqrt(low * high)  # 1.0: the middle of [log low, log high]
    assert abs(np.mean(x < geo_mean) - 0.5) < 0.05
    # each of the four decades holds about a quarter of the samples
    counts, _ = np.histogram(np.log10(x), bins=4, range=(-2, 2))
    assert np.all(np.abs(counts / len(x) - 0.25) < 0.04)


@pytest.mark.parametrize("low, high", [(0, 1), (-1, 1), (2, 1)])
def test_log_uniform_rejects_bad_ranges(low, high):
    with pytest.raises(ValueError):
        log_uniform(low, high, 3, seed=0)


def test_sample_pairs():
    pairs = sample_pairs(50, T_range=(1, 100), lam_range=(0.01, 100), seed=7)
    assert pairs == sample_pairs(50, seed=7)
    assert len(pairs) == 50 and set(pairs[0]) == {"T", "lam"}
    assert all(1 <= p["T"] <= 100 and 0.01 <= p["lam"] <= 100 for p in pairs)
    assert all(round_sig(p["T"], 3) == p["T"] for p in pairs)
    assert len({p["T"] for p in pairs}) > 40


def _rec(T, lam, acc):
    return {"run": f"T{T}_lam{lam}", "status": "complete", "params": {"T": T, "lam": lam},
            "best": {"test_top1": acc}}


def test_best_trial_and_refine_range():
    recs = [_rec(1, 0.01, 60.0), _rec(4, 0.5, 71.0), _rec(8, 1.0, 72.5), _rec(100, 50, 55.0),
            {"run": "broken", "params": {"T": 2, "lam": 1}}, _rec(3, 3, float("nan"))]
    assert best_trial(recs, "best.test_top1")["run"] == "T8_lam1.0"
    assert best_trial(recs, "best.test_top1", maximize=False)["run"] == "T100_lam50"
    low, high = refine_range(recs, "params.T", top_k=2, margin=0.25)
    assert low == pytest.approx(4 / 10 ** 0.25) and high == pytest.approx(8 * 10 ** 0.25)
    low, high = refine_range(recs, "T", top_k=1, margin=0.0)  # plain key looks into params
    assert (low, high) == pytest.approx((8, 8))
    assert refine_range(recs, "lam", top_k=4, margin=1, bounds=(0.01, 100)) == pytest.approx((0.01, 100))
    with pytest.raises(ValueError):
        best_trial([{"run": "x"}])
