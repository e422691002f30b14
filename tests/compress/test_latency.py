"""kdutils.compress.latency: CPU milliseconds per image, candidates timed side by side."""
import pytest
from torch import nn

from kdutils.compress.latency import cpu_latency, cpu_latency_rounds, paired_speedup


def _net(width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, 5))


def test_cpu_latency_reports_every_model_and_batch_size():
    models = {"small": _net(4), "large": _net(32)}
    ms = cpu_latency(models, (3, 16, 16), batch_sizes=(1, 4), rounds=3, warmup=1)
    assert set(ms) == {"small", "large"}
    for by_batch in ms.values():
        assert set(by_batch) == {1, 4} and all(v > 0 for v in by_batch.values())
    assert not models["small"].training  # measured in eval mode


def test_cpu_latency_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one model"):
        cpu_latency({}, (3, 8, 8))
    with pytest.raises(ValueError, match="rounds"):
        cpu_latency({"a": _net(2)}, (3, 8, 8), rounds=0)
    meta = _net(2).to("meta")
    with pytest.raises(ValueError, match="CPU copy"):
        cpu_latency({"a": meta}, (3, 8, 8))


def test_paired_speedup_is_the_median_of_per_round_ratios():
    timed = {64: {"ref": [1.0, 2.0, 4.0], "new": [0.5, 1.0, 4.0]}, 1: {"ref": [3.0], "new": [1.0]}}
    assert paired_speedup(timed, "ref", "new") == {64: 2.0, 1: 3.0}
    rounds = cpu_latency_rounds({"a": _net(2), "b": _net(2)}, (3, 8, 8), batch_sizes=(1, 2), rounds=2, warmup=0)
    assert [len(rounds[1]["a"]), len(rounds[2]["b"])] == [6, 2]  # three times the rounds at batch 1
