"""kdutils.core.precision: devices, autocast, and the timing helpers behind bench/ and fit's
automatic CPU settings (no timings asserted)."""
import json

import pytest
import torch
from torch import nn

from kdutils.core import precision, train
from kdutils.core.data import cache_dir
from kdutils.core.recipe import Recipe
from kdutils.core.train import Runtime


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def test_time_interleaved_alternates_the_order_and_times_every_round():
    calls = []
    seconds = precision.time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                     rounds=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then AB, BA, AB
    assert {k: len(v) for k, v in seconds.items()} == {"a": 3, "b": 3}
    assert all(s >= 0 for v in seconds.values() for s in v)


def test_choose_cpu_settings_returns_a_valid_cached_choice_and_leaves_the_model_alone(monkeypatch):
    monkeypatch.setattr(precision, "_CPU_CHOICES", {})
    model = _net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dtype, channels_last = precision.choose_cpu_settings(model, (4, 3, 8, 8), rounds=1)
    assert dtype in (None, torch.bfloat16) and isinstance(channels_last, bool)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model[0].weight.is_contiguous()
    stored = json.loads((cache_dir() / "cpu_settings.json").read_text())
    (entry,) = stored.values()
    assert len(entry["seconds_per_step"]) == 4  # fp32/bf16 x contiguous/channels-last
    # a new process (empty memory cache) reads the stored choice instead of measuring again
    monkeypatch.setattr(precision, "_CPU_CHOICES", {})
    monkeypatch.setattr(precision, "time_interleaved", lambda *a, **k: 1 / 0)
    assert precision.choose_cpu_settings(model, (4, 3, 8, 8), rounds=1) == (dtype, channels_last)


def test_choose_cpu_settings_measures_only_what_is_auto_and_only_when_it_pays(monkeypatch):
    monkeypatch.setattr(precision, "_CPU_CHOICES", {})
    monkeypatch.setattr(precision, "time_interleaved", lambda *a, **k: 1 / 0)  # must not be called
    model = _net()
    assert precision.choose_cpu_settings(model, amp="off", channels_last=True) == (None, True)
    assert precision.choose_cpu_settings(model, amp="bf16", channels_last=False) == (torch.bfloat16, False)
    # a run of 1,000 images would spend more than 5% of its time measuring: keep fp32 + contiguous
    assert precision.choose_cpu_settings(model, (32, 3, 8, 8), run_images=1_000) == (None, False)
    assert not (cache_dir() / "cpu_settings.json").exists()


def test_fit_trains_with_the_chosen_cpu_setting(monkeypatch):
    monkeypatch.setattr(precision, "choose_cpu_settings", lambda *a, **k: (torch.bfloat16, True))
    model = _net()
    batches = [(torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,)), torch.arange(8)) for _ in range(2)]
    rec = train.fit(model, batches, batches, Recipe(1, lr=0.01), run=train.Run("unit", "cpu_auto", "smoke"),
                    runtime=Runtime(log="off", device="cpu"))
    assert rec["amp"] == "bfloat16" and rec["channels_last"] is True
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert rec["history"][0]["train_loss"] == rec["history"][0]["train_loss"]  # not NaN
    model = _net()
    rec = train.fit(model, batches, None, Recipe(1, lr=0.01), run=train.Run("unit", "cpu_fixed", "smoke"),
                    runtime=Runtime(log="off", device="cpu", channels_last=False, amp="off"))
    assert rec["amp"] == "off" and rec["channels_last"] is False
    assert model[0].weight.is_contiguous()


def test_resolve_settings():
    cpu = torch.device("cpu")
    assert precision.resolve_device("cpu") == cpu
    assert precision.resolve_amp("off", cpu) is None and precision.resolve_amp("auto", cpu) is None
    assert precision.resolve_amp("bf16", cpu) is torch.bfloat16
    assert precision.resolve_amp("fp16", cpu) is torch.float16
    assert precision.resolve_channels_last("auto", cpu) is False and precision.resolve_channels_last(True, cpu)
    with pytest.raises(ValueError, match="amp"):
        precision.resolve_amp("int4", cpu)
    with precision.autocast_context(cpu, torch.bfloat16):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with precision.autocast_context(cpu, None):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.parametrize("content", ['{"key": {"amp": "bf16", "chann', "", "[]", '{"k": "not an entry"}'])
def test_a_damaged_cpu_settings_cache_is_measured_again_with_a_warning(monkeypatch, content):
    monkeypatch.setattr(precision, "_CPU_CHOICES", {})
    path = cache_dir() / "cpu_settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    model = _net()
    if content.startswith('{"k"'):  # valid JSON, an entry of another model: nothing to warn about
        choice = precision.choose_cpu_settings(model, (4, 3, 8, 8), rounds=1)
    else:
        with pytest.warns(UserWarning, match=r"cpu_settings.json .*measuring again"):
            choice = precision.choose_cpu_settings(model, (4, 3, 8, 8), rounds=1)
    stored = json.loads(path.read_text())
    assert isinstance(stored, dict) and len([e for e in stored.values() if isinstance(e, dict)]) == 1
    assert choice[0] in (None, torch.bfloat16)


_MEASURE_IN_A_PROCESS = r"""
import sys, time
from pathlib import Path
import torch
from torch import nn
from kdutils.core import precision

channels, barrier = int(sys.argv[1]), Path(sys.argv[2])
real = precision.time_interleaved
def slow(*args, **kwargs):  # both processes measure at the same time: a wide window for a lost update
    time.sleep(1.5)
    return real(*args, **kwargs)
precision.time_interleaved = slow
(barrier / f"ready{channels}").touch()
while len(list(barrier.glob("ready*"))) < 2:
    time.sleep(0.02)
model = nn.Sequential(nn.Conv2d(3, channels, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 2))
precision.choose_cpu_settings(model, (2, 3, 8, 8), rounds=1)
"""


def test_two_processes_measuring_at_once_keep_both_entries(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    procs = [subprocess.Popen([sys.executable, "-c", _MEASURE_IN_A_PROCESS, str(c), str(tmp_path)], env=env,
                              stderr=subprocess.PIPE, text=True) for c in (2, 3)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    stored = json.loads((cache_dir() / "cpu_settings.json").read_text())
    assert len(stored) == 2  # one entry per model, none lost
