"""Runs repeated over seeds: their names, their mean and spread, and when a difference is real.

One training run is one draw: another seed gives another initialisation and other batches,
and on the small quick profile that alone moves test top-1 by a point or more. So a table
row that compares methods is a *set* of runs, one per seed, shown as ``mean ± std``, and a
difference between two rows is called real only when it exceeds the spread of the runs.

- :func:`seeded_name`: the run name of one seed (seed 0 keeps the plain name, so a
  single-seed profile and older records keep theirs); :func:`base_name` and
  :func:`group_by_base` undo it;
- :func:`seed_table`: mean, standard deviation and count per group of a table of runs;
- :func:`difference`: the difference of two groups of runs, its spread and the verdict;
- :func:`describe`: ``"41.23 ± 0.85 (3 seeds)"``.

The rule (:func:`difference`): with per-seed standard deviations ``s_a`` and ``s_b``, the
spread of the difference of two single runs is ``sqrt(s_a² + s_b²)``; a difference of means
larger than that is *real*, a smaller one is *within the seed spread*. With fewer than two
seeds on either side there is no spread, and the caller falls back to the test-set noise
band (:func:`kdutils.core.findings.noise_band`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence

#: The records' field that holds a run's seed (``params.seed``).
SEED_KEY = "seed"


def check_seeds(seeds: Sequence[int], what: str = "seeds") -> tuple:
    """``seeds`` as a tuple of distinct non-negative ints; raises naming the bad entry."""
    if isinstance(seeds, (int, str)) or not isinstance(seeds, Sequence) or not seeds:
        raise ValueError(f"{what} must be a non-empty list of ints, e.g. [0, 1, 2], got {seeds!r}")
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"{what}: every seed must be an int >= 0, got {s!r} in {list(seeds)!r}")
        if s in out:
            raise ValueError(f"{what}: seed {s} is listed twice in {list(seeds)!r}")
        out.append(s)
    return tuple(out)


def seeded_name(name: str, seed: int) -> str:
    """The run name of ``name`` trained with ``seed``: unchanged for seed 0, else ``<name>_seed<s>``."""
    return name if seed == 0 else f"{name}_seed{seed}"


def base_name(name: str) -> str:
    """The run name without its seed suffix: the inverse of :func:`seeded_name`."""
    return re.sub(r"_seed\d+$", "", name)


def seed_of(name: str) -> int:
    """The seed a run name was trained with: the inverse of :func:`seeded_name` (no suffix: 0)."""
    m = re.search(r"_seed(\d+)$", name)
    return int(m.group(1)) if m else 0


def group_by_base(records: Iterable[Mapping]) -> dict:
    """Records grouped by :func:`base_name` of their ``run`` (first-seen order)."""
    groups: dict = {}
    for r in records:
        groups.setdefault(base_name(r["run"]), []).append(r)
    return groups


def _clean(values: Iterable) -> list:
    return [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def mean_std(values: Iterable) -> tuple:
    """``(mean, std, n)`` of the non-missing values; std is the sample standard deviation
    (``ddof=1``), NaN for fewer than two values; mean is NaN for none."""
    vals = _clean(values)
    n = len(vals)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else math.nan
    return mean, std, n


def describe(values: Iterable, digits: int = 2) -> str:
    """``"41.23 ± 0.85 (3 seeds)"``, ``"41.23 (1 seed)"`` or ``"-"`` without values."""
    mean, std, n = mean_std(values)
    if n == 0:
        return "-"
    if n == 1:
        return f"{mean:.{digits}f} (1 seed)"
    return f"{mean:.{digits}f} ± {std:.{digits}f} ({n} seeds)"


def seed_table(table, by: Sequence[str], values: Sequence[str]):
    """One row per group ``by`` of a pandas table of runs (one row per run and seed): for
    every column of ``values`` its ``<col> mean``, ``<col> std`` and the group's ``seeds``
    (count). Groups keep their first-seen order."""
    import pandas as pd

    rows = []
    for key, group in table.groupby(list(by), sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        for col in values:
            mean, std, n = mean_std(group[col])
            row[f"{col} mean"], row[f"{col} std"] = mean, std
            row["seeds"] = max(row.get("seeds", 0), n)
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Difference:
    """The difference ``a - b`` of two groups of runs (means), the spread of single-run
    differences, and whether the difference exceeds it."""

    delta: float
    spread: Optional[float]
    n_a: int
    n_b: int

    @property
    def known(self) -> bool:
        """True when both sides have at least two seeds, so the spread is measured."""
        return self.spread is not None

    @property
    def real(self) -> bool:
        """True when the spread is known and ``|delta|`` exceeds it."""
        return self.known and abs(self.delta) > self.spread

    def words(self) -> str:
        """``"+2.10 points, real (seed spread ±0.80)"`` / ``"... within the seed spread ..."``."""
        if not self.known:
            return f"{self.delta:+.2f} points (fewer than 2 seeds: no seed spread)"
        verdict = "real" if self.real else "within the seed spread"
        return f"{self.delta:+.2f} points, {verdict} (seed spread ±{self.spread:.2f})"


def difference(a: Iterable, b: Iterable) -> Difference:
    """The difference of the means of runs ``a`` and ``b`` with the rule of this module."""
    mean_a, std_a, n_a = mean_std(a)
    mean_b, std_b, n_b = mean_std(b)
    if n_a == 0 or n_b == 0:
        raise ValueError(f"difference needs runs on both sides, got {n_a} and {n_b}")
    spread = math.sqrt(std_a**2 + std_b**2) if n_a > 1 and n_b > 1 else None
    return Difference(mean_a - mean_b, spread, n_a, n_b)
