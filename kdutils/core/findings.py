"""The noise band of a measured accuracy, and the sentences that compare measured numbers.

Every generated "findings" text (part 1's ablation steps, part 2's KD gains, the findings of
parts 3-5 and therefore the one-page reports, which print the parts' own findings) judges a
difference of two test accuracies against one band: the test-set sampling noise of that
difference. A difference inside the band does not tell which run is better, and the
sentences built here say so in the same words everywhere.

Numbers:

- :func:`standard_error`: binomial standard error (points) of one top-1 accuracy (%)
  measured on ``n_test`` images, ``100 * sqrt(p (1 - p) / n)``;
- :func:`noise_band`: two standard errors of the difference of two such accuracies,
  ``2 * sqrt(2) * standard_error`` (a rough 95 % band from test-set sampling alone;
  seed-to-seed training variation comes on top);
- :func:`verdict`: ``"gain"`` / ``"loss"`` beyond the band, ``"noise"`` inside it
  (``|delta| <= noise``), ``"unknown"`` without a band;
- :func:`ratio`: ``a / b`` as ``"1.20x"``.

Sentences (Markdown; ``**bold**`` names):

- :func:`verdict_words`: ``"a gain beyond the ±1.41-point noise band"``;
- :func:`compare`: ``"X is ahead of Y by 3.20 points, beyond the noise band ±1.41"``;
- :func:`band_sentence`: how large a difference must be on ``n_test`` images;
- :func:`tally`: the largest gain and loss beyond noise over several :class:`Step` s;
- :func:`as_markdown`: a list of sentences as Markdown bullets (what the notebooks display;
  the report prints the same list).

A part's ``findings(records, ...)`` returns a list of such sentences; its notebook displays
it with :func:`as_markdown` and the part's page of the report prints the same list.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


# --------------------------------------------------------------------------- numbers
def standard_error(top1: float, n_test: int) -> float:
    """Binomial standard error (percentage points) of a top-1 accuracy ``top1`` (%) measured
    on ``n_test`` images (``top1`` is clipped to [0, 100])."""
    if not n_test or n_test < 1:
        raise ValueError(f"n_test must be >= 1, got {n_test!r}")
    p = min(max(top1 / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1 - p) / n_test)


def noise_band(top1: float, n_test: Optional[int]) -> Optional[float]:
    """Two standard errors (points) of the difference of two accuracies near ``top1`` (%),
    each measured on ``n_test`` images: ``2 * sqrt(2) * standard_error(top1, n_test)``,
    i.e. ``200 * sqrt(2 p (1 - p) / n)``; None when ``n_test`` is None (not recorded).

    A difference inside this band comes from test-set sampling as easily as from the
    change being measured; training noise (another seed) widens it further.
    """
    if n_test is None:
        return None
    return 2 * math.sqrt(2) * standard_error(top1, n_test)


def verdict(delta: Optional[float], noise: Optional[float]) -> str:
    """``"gain"`` or ``"loss"`` when ``|delta|`` exceeds ``noise``, ``"noise"`` when it does
    not, ``"unknown"`` when either is missing."""
    if _missing(delta) or _missing(noise):
        return "unknown"
    if abs(delta) <= noise:
        return "noise"
    return "gain" if delta > 0 else "loss"


def ratio(a, b, digits: int = 2) -> str:
    """``a / b`` as ``"1.20x"`` (``"n/a"`` when either is missing or ``b`` is 0)."""
    if _missing(a) or _missing(b) or not b:
        return "n/a"
    return f"{a / b:.{digits}f}x"


# --------------------------------------------------------------------------- sentences
NO_BAND = "no noise band: the number of test images is not known"


def verdict_words(delta: Optional[float], noise: Optional[float]) -> str:
    """``"a gain beyond the ±1.41-point noise band"``, ``"a loss beyond ..."``, ``"inside the
    ±1.41-point noise band"``, or :data:`NO_BAND`."""
    kind = verdict(delta, noise)
    if kind == "unknown":
        return NO_BAND
    band = f"the ±{noise:.2f}-point noise band"
    return f"inside {band}" if kind == "noise" else f"a {kind} beyond {band}"


def compare(name: str, value: float, ref_name: str, ref_value: float, noise: Optional[float]) -> str:
    """One comparison of two measured accuracies (points), e.g. ``"X is ahead of Y by 3.20
    points, beyond the noise band ±1.41"`` / ``"X is behind Y by 0.40 points, inside the
    noise band ±1.41"`` / ``"X is level with Y, ..."``; without a band (``noise`` None) only
    the position. No final full stop."""
    delta = value - ref_value
    if delta == 0:
        position = f"{name} is level with {ref_name}"
    else:
        position = f"{name} is {'ahead of' if delta > 0 else 'behind'} {ref_name} by {abs(delta):.2f} points"
    kind = verdict(delta, noise)
    if kind == "unknown":  # say so once, with band_sentence
        return position
    return f"{position}, {'inside' if kind == 'noise' else 'beyond'} the noise band ±{noise:.2f}"


def band_sentence(top1: Optional[float], n_test: Optional[int]) -> str:
    """How far apart two accuracies near ``top1`` (%) must be on ``n_test`` images to be told
    apart from sampling noise (one sentence); without ``n_test``, that no band can be drawn."""
    if not n_test:
        return "The number of test images is not recorded, so no noise band can be drawn."
    return (f"With {n_test:,} test images, two accuracies near {top1:.1f}% must differ by more than "
            f"{noise_band(top1, n_test):.2f} points (two standard errors of their difference) to be told "
            "apart from sampling noise.")


@dataclass(frozen=True)
class Step:
    """One measured change: its ``name``, its effect ``delta`` (points) and the ``noise``
    band it is judged against."""

    name: str
    delta: float
    noise: Optional[float]

    @property
    def verdict(self) -> str:
        return verdict(self.delta, self.noise)


def tally(steps: Iterable[Step], what: str = "change", count: bool = False) -> list:
    """Sentences over several steps: the largest gain and the largest loss beyond noise (or
    that none moved beyond it); with ``count``, how many of them are gains beyond noise
    (``"1 of 3 methods ..."``, ``what`` names one step)."""
    steps = [s for s in steps if s.verdict != "unknown"]
    if not steps:
        return []
    gains = [s for s in steps if s.verdict == "gain"]
    losses = [s for s in steps if s.verdict == "loss"]
    out = []
    if gains:
        best = max(gains, key=lambda s: s.delta)
        out.append(f"The largest gain beyond noise came from **{best.name}** ({best.delta:+.2f} points).")
    if losses:
        worst = min(losses, key=lambda s: s.delta)
        out.append(f"The largest loss beyond noise came from **{worst.name}** ({worst.delta:+.2f} points).")
    if not gains and not losses:
        out.append(f"No single {what} moved top-1 beyond the noise band.")
    if count:
        out.append(f"{len(gains)} of {len(steps)} {what}s beat their reference by more than the noise band.")
    return out


def as_markdown(lines: Sequence[str], caveat: Optional[str] = None) -> str:
    """``lines`` as Markdown bullets, after ``caveat`` in bold when given."""
    head = [f"**{caveat}**", ""] if caveat else []
    return "\n".join(head + [f"- {line}" for line in lines])
