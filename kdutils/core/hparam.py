"""Random hyper-parameter search on a log scale (part 3's temperature / lambda search).

Hinton's loss in the search is ``CE(y, student) + lam * T**2 * KL(teacher_T || student_T)``:
``T`` (temperature) and ``lam`` (weight of the soft term) span orders of magnitude
(T in [1, 100], lam in [0.01, 100]), so they are sampled **log-uniformly**: every
decade gets the same number of trials, whereas a uniform draw on [0.01, 100] would put
90% of the trials above 10 and fewer than 0.1% below 0.1.

The usual loop: :func:`sample_pairs` -> run them (``kdutils.tools.sweep``) -> look at the
heat map -> :func:`refine_range` around the best trials -> sample again, narrower.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from kdutils.core.records import get_field

SeedLike = Union[int, np.random.Generator, None]


def _rng(seed: SeedLike) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_range(low: float, high: float, what: str = "range") -> None:
    if not (low > 0):
        raise ValueError(f"{what}: low must be > 0 for a log scale, got low={low!r}")
    if not (high >= low):
        raise ValueError(f"{what}: high must be >= low, got low={low!r}, high={high!r}")


def round_sig(x: float, digits: int = 3) -> float:
    """``x`` rounded to ``digits`` significant digits (37.2918 -> 37.3, 0.021437 -> 0.0214)."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def log_uniform(low: float, high: float, n: int, seed: SeedLike = 0) -> np.ndarray:
    """``n`` values whose logarithm is uniform on ``[log low, log high]``.

    Reproducible: the same ``seed`` (an int) gives the same values; a
    ``numpy.random.Generator`` may be passed instead to draw several series from one
    stream. Values are clipped to ``[low, high]`` against rounding in ``exp``.
    Raises ``ValueError`` if ``low <= 0`` or ``high < low``.
    """
    _check_range(low, high, "log_uniform")
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    u = _rng(seed).uniform(math.log(low), math.log(high), size=int(n))
    return np.clip(np.exp(u), low, high)


def sample_pairs(
    n: int,
    T_range: Sequence[float] = (1, 100),
    lam_range: Sequence[float] = (0.01, 100),
    seed: SeedLike = 0,
    digits: Optional[int] = 3,
) -> list[dict]:
    """``n`` random ``{"T": ..., "lam": ...}`` pairs, both log-uniform, reproducible.

    Both series come from one generator seeded by ``seed``. Values are rounded to
    ``digits`` significant digits (``None`` keeps full precision) so that run names and
    tables stay readable; rounding never leaves the ranges.
    """
    rng = _rng(seed)
    Ts = log_uniform(T_range[0], T_range[1], n, rng)
    lams = log_uniform(lam_range[0], lam_range[1], n, rng)
    out = []
    for T, lam in zip(Ts, lams):
        T, lam = float(T), float(lam)
        if digits is not None:
            T = min(max(round_sig(T, digits), T_range[0]), T_range[1])
            lam = min(max(round_sig(lam, digits), lam_range[0]), lam_range[1])
        out.append({"T": T, "lam": lam})
    return out


def _get(rec: Mapping, key: str) -> Any:
    """A dotted key (``params.T``, ``best.test_top1``); a plain key is also looked up in
    ``rec["params"]`` so that flat dicts and records both work."""
    if key in rec:
        return rec[key]
    value = get_field(rec, key)
    if value is None and "." not in key and isinstance(rec.get("params"), Mapping):
        return rec["params"].get(key)
    return value


def _score(rec: Mapping, metric: str) -> Optional[float]:
    v = _get(rec, metric)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def ranked(records: Iterable[Mapping], metric: str = "best.test_top1", maximize: bool = True) -> list:
    """The records that have a finite ``metric``, best first."""
    scored = [(s, r) for r in records if (s := _score(r, metric)) is not None]
    scored.sort(key=lambda sr: sr[0], reverse=maximize)
    return [r for _, r in scored]


def best_trial(records: Iterable[Mapping], metric: str = "best.test_top1", maximize: bool = True) -> Mapping:
    """The record with the best ``metric`` (a dotted key); ``ValueError`` if none has it."""
    records = list(records)
    order = ranked(records, metric, maximize)
    if not order:
        raise ValueError(f"none of the {len(records)} records has a numeric {metric!r}")
    return order[0]


def refine_range(
    results: Iterable[Mapping],
    key: str,
    top_k: int = 3,
    margin: float = 0.25,
    metric: str = "best.test_top1",
    maximize: bool = True,
    bounds: Optional[Sequence[float]] = None,
) -> tuple[float, float]:
    """A narrower ``(low, high)`` for parameter ``key`` around the ``top_k`` best trials.

    In log10 space: from the smallest to the largest ``key`` among the ``top_k`` best
    trials (ranked by ``metric``), widened by ``margin`` decades on each side (0.25
    decades = a factor of 1.78), then clipped to ``bounds`` (e.g. the original range)
    when given. ``key`` and ``metric`` are dotted keys (``params.T`` or just ``T``).
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k!r}")
    if margin < 0:
        raise ValueError(f"margin (in decades) must be >= 0, got {margin!r}")
    best = ranked(results, metric, maximize)[:top_k]
    values = [float(v) for r in best if (v := _get(r, key)) is not None]
    if not values:
        raise ValueError(f"no trial has both {metric!r} and {key!r}")
    if min(values) <= 0:
        raise ValueError(f"{key} must be > 0 for a log-scale range, got {min(values)}")
    low = 10 ** (math.log10(min(values)) - margin)
    high = 10 ** (math.log10(max(values)) + margin)
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return low, high


__all__ = [
    "log_uniform",
    "sample_pairs",
    "round_sig",
    "ranked",
    "best_trial",
    "refine_range",
]
