"""Teacher sources (kdutils.distill.teachers): live, cached per epoch, recorded, manual, own predictions."""
import copy

import pytest
import torch

from kdutils.core.objective import Batch
from kdutils.core.recipe import Recipe
from kdutils.core.train import Runtime, fit
from kdutils.distill.objectives import KDLoss
from kdutils.distill.teachers import (
    CachedLogits,
    LiveTeacher,
    ManualTarget,
    OwnPredictions,
    RecordedLogits,
    TeacherLogits,
)
from tests.helpers import CountingTeacher, tiny_loader, tiny_student


def test_table_gives_the_same_training_as_a_teacher_in_the_loop():
    loader = tiny_loader()
    teacher = CountingTeacher()
    a, b = tiny_student(), tiny_student()
    recipe, rt = Recipe(2, lr=0.05), Runtime(log="off", device="cpu")
    rec_a = fit(a, loader, None, recipe, KDLoss(alpha=0.7, tau=4.0, form="kl", teacher=LiveTeacher(teacher)),
                runtime=rt)
    table = TeacherLogits(teacher, loader, cache=False)
    rec_b = fit(b, loader, None, recipe, KDLoss(alpha=0.7, tau=4.0, form="kl", teacher=CachedLogits(table)),
                runtime=rt)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert [h["train_loss"] for h in rec_a["history"]] == pytest.approx([h["train_loss"] for h in rec_b["history"]],
                                                                        rel=1e-5)
    # the table rows of samples the epoch drops (drop_last) are NaN, every used row is finite
    rows = table(0)
    assert rows.shape == (40, 10) and torch.isnan(rows).any(dim=1).sum() == 40 - (40 // 16) * 16


def test_table_is_cached_on_disk_and_keyed_by_teacher_and_loader(tmp_path):
    loader, teacher = tiny_loader(), CountingTeacher()
    first = TeacherLogits(teacher, loader)
    logits = first(1)
    assert (first.folder / "epoch001.pt").is_file()
    calls = teacher.calls
    again = TeacherLogits(teacher, loader)
    assert again.key == first.key
    torch.testing.assert_close(again(1), logits, equal_nan=True)
    assert teacher.calls == calls, "a cached epoch must not run the teacher again"
    assert loader.epoch == 0, "computing a table must leave the loader's epoch as it was"

    other_seed = TeacherLogits(teacher, tiny_loader(seed=5))
    changed = copy.deepcopy(teacher)
    with torch.no_grad():
        changed.net[1].bias.add_(1.0)
    assert len({first.key, other_seed.key, TeacherLogits(changed, loader).key}) == 3


def test_sample_indexed_sources_need_the_index():
    batch = Batch(torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.long), index=None)
    for source in (CachedLogits(TeacherLogits(CountingTeacher(), tiny_loader(), cache=False)),
                   RecordedLogits(torch.zeros(4, 10)), OwnPredictions(4, 10)):
        with pytest.raises(ValueError, match="index"):
            source(batch)


def test_live_teacher_runs_frozen_in_the_runs_precision_and_keeps_features():
    teacher = CountingTeacher()
    teacher.train()
    source = LiveTeacher(teacher, feature_layers=["net.1"])
    source.prepare(torch.device("cpu"), torch.bfloat16, channels_last=False)
    x = torch.randn(3, 3, 8, 8)
    z = source(Batch(x, torch.zeros(3, dtype=torch.long)))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert z.dtype == torch.float32 and source.features["net.1"].dtype == torch.bfloat16  # autocast ran
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(z, teacher(x).float())
    assert len(source.state_dict()) == 0  # the teacher's weights are not the objective's state


def test_recorded_manual_and_own_prediction_sources():
    rec = torch.randn(5, 4)
    y = torch.tensor([3, 0])
    idx = torch.tensor([4, 1])
    assert torch.equal(RecordedLogits(rec)(Batch(torch.zeros(2), y, idx)), rec[idx])
    manual = ManualTarget(4, a=0.7)(Batch(torch.zeros(2), y, idx))
    assert torch.allclose(manual[0], torch.tensor([0.1, 0.1, 0.1, 0.7]))
    own = OwnPredictions(5, 4)
    batch = Batch(torch.zeros(2), y, idx)
    prev, filled = own(batch)
    assert not filled.any() and torch.equal(prev, torch.zeros(2, 4))
    own.remember(batch, torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]))
    prev, filled = own(batch)
    assert filled.all() and torch.allclose(prev[0], torch.full((4,), 0.25))





@pytest.mark.parametrize("damage", ["truncate", "empty", "wrong shape"])
def test_a_damaged_logits_cache_is_rebuilt_with_a_warning(damage):
    loader, teacher = tiny_loader(), CountingTeacher()
    table = TeacherLogits(teacher, loader)
    logits = table(0)
    path = table.folder / "epoch000.pt"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.save(torch.zeros(3, 10), path)
    again = TeacherLogits(teacher, loader)
    with pytest.warns(UserWarning, match=r"teacher-logits cache .*epoch000.pt .*computing the logits again"):
        rebuilt = again(0)
    torch.testing.assert_close(rebuilt, logits, equal_nan=True)
    torch.testing.assert_close(torch.load(path, weights_only=True), logits, equal_nan=True)  # rewritten
