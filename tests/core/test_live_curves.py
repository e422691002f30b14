"""Live TensorBoard curves: off unless KD_TENSORBOARD is set; when on, fit's callback writes
every numeric history value per epoch, read back here from the event files."""
import pytest
import torch
from torch import nn

from kdutils.core import live_curves
from kdutils.core.profiles import runs_dir
from kdutils.core.recipe import Recipe
from kdutils.core.train import Run, Runtime, fit


def test_scalar_names_group_by_prefix():
    assert live_curves.scalar_name("train_loss") == "train/loss"
    assert live_curves.scalar_name("old_test_top1") == "old_test/top1"
    assert live_curves.scalar_name("lr") == "lr"


def test_switch_off_by_default_on_with_1_or_a_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(live_curves.ENV, raising=False)
    assert live_curves.log_dir_for("part9", "smoke", "r") is None
    assert live_curves.log_dir_for("part9", "smoke", "r", "0") is None
    assert live_curves.from_environment(Run("part9", "r", "smoke")) == ()
    assert live_curves.log_dir_for("part9", "smoke", "r", "1") == runs_dir() / "tensorboard" / "smoke" / "part9" / "r"
    assert live_curves.log_dir_for("part9", "smoke", "r", str(tmp_path)) == tmp_path / "smoke" / "part9" / "r"
    monkeypatch.setenv(live_curves.ENV, "1")
    assert live_curves.from_environment(None) == ()  # no run, nothing to name the curves by


def test_fit_writes_one_point_per_epoch_when_switched_on(monkeypatch, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv(live_curves.ENV, str(tmp_path / "tb"))
    torch.manual_seed(0)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    batches = [(x[:8], y[:8]), (x[8:], y[8:])]
    fit(nn.Linear(4, 3), batches, batches, Recipe(epochs=2, lr=0.1), run=Run("part9", "tb_demo", "smoke"),
        runtime=Runtime(log="off"))
    events = EventAccumulator(str(tmp_path / "tb" / "smoke" / "part9" / "tb_demo"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "train/loss" in tags and "test/top1" in tags
    assert [e.step for e in events.Scalars("test/top1")] == [1, 2]
