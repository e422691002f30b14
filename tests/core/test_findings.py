"""The noise band and the comparison sentences every part's findings are built from
(kdutils.core.findings)."""
import math

import pytest

from kdutils.core import findings as F


def test_standard_error_and_noise_band():
    assert F.standard_error(50.0, 10_000) == pytest.approx(0.5)
    assert F.standard_error(0.0, 100) == 0.0 and F.standard_error(120.0, 100) == 0.0  # clipped to [0, 100]
    # two standard errors of a difference: 2 * sqrt(2) * SE = 200 * sqrt(2 p (1 - p) / n)
    assert F.noise_band(50.0, 10_000) == pytest.approx(200 * math.sqrt(2 * 0.25 / 10_000))
    assert F.noise_band(55.0, 10_000) == 2 * math.sqrt(2) * F.standard_error(55.0, 10_000)  # bit for bit
    assert F.noise_band(80.0, 100) > F.noise_band(80.0, 10_000)
    assert F.noise_band(0.0, 100) == 0.0
    assert F.noise_band(50.0, None) is None  # not recorded: no band
    with pytest.raises(ValueError, match="n_test"):
        F.standard_error(50.0, 0)


def test_verdict_and_its_words():
    assert F.verdict(3.0, 1.4) == "gain" and F.verdict(-3.0, 1.4) == "loss"
    assert F.verdict(1.4, 1.4) == "noise" and F.verdict(-0.2, 1.4) == "noise"  # the edge is inside
    assert F.verdict(3.0, None) == F.verdict(math.nan, 1.0) == "unknown"
    assert F.verdict_words(3.0, 1.4) == "a gain beyond the ±1.40-point noise band"
    assert F.verdict_words(-3.0, 1.4) == "a loss beyond the ±1.40-point noise band"
    assert F.verdict_words(0.5, 1.4) == "inside the ±1.40-point noise band"
    assert F.verdict_words(0.5, None) == F.NO_BAND


def test_compare_says_who_is_ahead_and_whether_it_is_noise():
    assert F.compare("KD", 53.5, "the baseline", 50.0, 1.41) == \
        "KD is ahead of the baseline by 3.50 points, beyond the noise band ±1.41"
    assert F.compare("KD", 49.6, "the baseline", 50.0, 1.41) == \
        "KD is behind the baseline by 0.40 points, inside the noise band ±1.41"
    assert F.compare("A", 50.0, "B", 50.0, 1.0) == "A is level with B, inside the noise band ±1.00"
    assert F.compare("A", 52.0, "B", 50.0, None) == "A is ahead of B by 2.00 points"  # no band: position only


def test_band_sentence():
    text = F.band_sentence(50.0, 1000)
    assert text.startswith("With 1,000 test images, two accuracies near 50.0% must differ by more than 4.47 points")
    assert "not recorded" in F.band_sentence(None, None)


def test_tally_names_the_largest_moves_beyond_noise():
    steps = [F.Step("a", 3.0, 1.0), F.Step("b", 5.0, 1.0), F.Step("c", -2.0, 1.0), F.Step("d", 0.5, 1.0),
             F.Step("e", 9.0, None)]  # no band: left out
    lines = F.tally(steps, what="method", count=True)
    assert lines == ["The largest gain beyond noise came from **b** (+5.00 points).",
                     "The largest loss beyond noise came from **c** (-2.00 points).",
                     "2 of 4 methods beat their reference by more than the noise band."]
    assert F.tally([F.Step("a", 0.5, 1.0)]) == ["No single change moved top-1 beyond the noise band."]
    assert F.tally([F.Step("a", 0.5, None)]) == []


def test_ratio_and_markdown():
    assert F.ratio(12.0, 10.0) == "1.20x" and F.ratio(1, 3, digits=1) == "0.3x"
    assert F.ratio(None, 1.0) == F.ratio(1.0, 0) == F.ratio(math.nan, 1.0) == "n/a"
    assert F.as_markdown(["one.", "two."]) == "- one.\n- two."
    assert F.as_markdown(["one."], caveat="Quick numbers.") == "**Quick numbers.**\n\n- one."
