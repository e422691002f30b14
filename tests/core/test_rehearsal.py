"""The full-scale rehearsal: caps, measurements, its own output folders, no reuse across kinds."""
import json
import shutil

import pytest
import torch
from torch import nn

from kdutils.core import profiles, records, rehearsal, train
from kdutils.core.data import ImageSet
from kdutils.core.loader import loaders_for
from kdutils.core.recipe import Recipe
from kdutils.core.train import Runtime

QUIET = Runtime(log="off", amp="off", channels_last=False)


@pytest.fixture(autouse=True)
def _no_rehearsal_left_on(monkeypatch):
    monkeypatch.delenv("KD_REHEARSE", raising=False)
    monkeypatch.delenv("KD_PROFILE", raising=False)
    rehearsal.switch_off()
    yield
    rehearsal.switch_off()


class Counting:
    """A loader that counts the batches it hands out (and keeps ``len``)."""

    def __init__(self, loader):
        self.loader, self.served = loader, 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            self.served += 1
            yield batch

    def set_epoch(self, epoch):
        self.loader.set_epoch(epoch)


def _loaders(n_train=200, n_test=120, batch=10):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_train + n_test, 8, 8, 3), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 4, (n_train + n_test,), generator=g)
    classes = [f"c{i}" for i in range(4)]
    sets = ImageSet(images[:n_train], labels[:n_train], classes), ImageSet(images[n_train:], labels[n_train:], classes)
    tr, te = loaders_for(*sets, batch, (0.5,) * 3, (0.25,) * 3, device="cpu", eval_batch_size=batch)
    return Counting(tr), Counting(te)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 4))


#: A full-length recipe (30 epochs, test after every 5th), as the full profile would have.
FULL_RECIPE = Recipe(30, lr=0.05, eval_every=5)


def test_caps_measurements_and_own_folder(tmp_path):
    tr, te = _loaders()
    run = train.Run("unitpart", "capped", "full", params={"lr": 0.05})
    with rehearsal.rehearsing(steps=3, eval_batches=2):
        rec = train.fit(_net(), tr, te, FULL_RECIPE, run=run, runtime=QUIET)
        written = records.record_path("unitpart", "capped", "full")
        checkpoint = run.checkpoint_path
    # caps: 2 epochs of 3 steps, one capped evaluation at the last rehearsed epoch
    assert [h["epoch"] for h in rec["history"]] == [1, 2]
    assert tr.served == 6 and te.served == 2
    assert rec["history"][-1]["test_top1"] is not None and "test_top1" not in rec["history"][0]
    block = rec["rehearsal"]
    assert block["caps"] == {"steps": 3, "eval_batches": 2, "epochs": 2}
    assert block["steps_done"] == 6 and block["steps_timed"] == 5 and block["seconds_per_step"] > 0
    assert block["steps_per_epoch"] == 20 and block["epochs"] == 30 and block["eval_batches"] == 12
    assert block["evals"] == 6  # epochs 5, 10, ..., 30
    assert block["peak_host_bytes"] > 10 * 2 ** 20 and block["host_peak_scope"] in ("run", "process")
    assert block["peak_gpu_bytes"] is None  # CPU
    assert block["checkpoint_bytes"] == checkpoint.stat().st_size > 0
    expected = (block["seconds_per_step"] * 20 * 30 + block["seconds_per_eval_batch"] * 12 * 6)
    assert block["projected_seconds"] == pytest.approx(expected) == rec["projected_seconds"]
    # everything under the rehearsal folders, nothing where full runs live
    out = profiles.output_root()
    assert written == out / "results" / "rehearsal" / "full" / "unitpart" / "capped.json" and written.exists()
    assert checkpoint.is_relative_to(out / "runs" / "rehearsal") and checkpoint.exists()
    assert not (out / "results" / "full").exists() and not (out / "runs" / "checkpoints").exists()
    # a second rehearsal reuses its own finished record
    with rehearsal.rehearsing(steps=3, eval_batches=2):
        again = train.fit(_net(), *_loaders(), FULL_RECIPE, run=run, runtime=QUIET)
    assert again["created"] == rec["created"]


def test_a_rehearsal_record_never_stands_for_a_full_run():
    run = train.Run("unitpart", "guarded", "full", params={"lr": 0.05})
    with rehearsal.rehearsing(steps=2, eval_batches=1):
        train.fit(_net(), *_loaders(), FULL_RECIPE, run=run, runtime=QUIET)
        rehearsal_record = records.record_path("unitpart", "guarded", "full")
        rehearsal_checkpoint = run.checkpoint_path
    # a full run finds nothing of the rehearsal in its folders ...
    assert records.load_record("unitpart", "guarded", "full") is None
    # ... and a rehearsal record copied there is refused, not reused
    full_record = records.record_path("unitpart", "guarded", "full")
    full_record.parent.mkdir(parents=True)
    shutil.copy(rehearsal_record, full_record)
    run.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(rehearsal_checkpoint, run.checkpoint_path)
    with pytest.raises(ValueError, match="made by a rehearsal"):
        train.fit(_net(), *_loaders(), FULL_RECIPE, run=run, runtime=QUIET)
    # and the other way round: a real record in the rehearsal folder is not taken as measured
    real = json.loads(rehearsal_record.read_text())
    del real["rehearsal"]
    rehearsal_record.write_text(json.dumps(real))
    with rehearsal.rehearsing(steps=2, eval_batches=1), pytest.raises(ValueError, match="real run"):
        train.fit(_net(), *_loaders(), FULL_RECIPE, run=run, runtime=QUIET)


def test_without_rehearsal_nothing_is_capped_or_measured():
    tr, te = _loaders(n_train=60, n_test=30)
    rec = train.fit(_net(), tr, te, Recipe(2, lr=0.05), runtime=QUIET)
    assert tr.served == 12 and te.served == 6 and "rehearsal" not in rec  # 2 epochs, all batches
    assert profiles.results_dir() == profiles.output_root() / "results"


def test_resolve_switches_the_rehearsal_on_with_the_full_settings(monkeypatch):
    settings = {"quick": {"epochs": 3}, "full": {"epochs": 30}}
    setup = profiles.resolve("", "", settings, rehearse=True)
    assert setup.profile == "full" and setup.rehearse and setup["epochs"] == 30
    assert "REHEARSAL" in setup.describe()
    assert profiles.results_dir().name == "rehearsal" and profiles.figures_dir().name == "rehearsal"
    assert profiles.runs_dir().name == "rehearsal" and profiles.reports_dir().name == "rehearsal"
    with pytest.raises(ValueError, match="full profile's settings"):
        profiles.resolve("quick", "", settings, rehearse=True)
    rehearsal.switch_off()
    assert not profiles.resolve("quick", "", settings).rehearse
    monkeypatch.setenv("KD_REHEARSE", "1")
    monkeypatch.setenv("KD_REHEARSE_STEPS", "4")
    setup = profiles.resolve("", "", settings, rehearse=False)  # the notebook default leaves it to the environment
    assert setup.rehearse and setup.profile == "full" and rehearsal.caps().steps == 4
    monkeypatch.setenv("KD_REHEARSE_STEPS", "four")
    with pytest.raises(ValueError, match="KD_REHEARSE_STEPS"):
        rehearsal.caps()


def test_caps_are_validated():
    with pytest.raises(ValueError, match="at least 2 steps"):
        rehearsal.Caps(steps=1)
    with pytest.raises(ValueError, match="eval_batches"):
        rehearsal.Caps(eval_batches=0)


def test_projection_by_hand():
    history = [{"epoch": 1, "eval_seconds": 0.0},
               {"epoch": 2, "test_top1": 5.0, "eval_seconds": 0.5}]
    caps = rehearsal.Caps(steps=3, eval_batches=2)
    p = rehearsal._projection(0.2, 100, 10, 3, history, range(40), caps)
    # evaluations at epochs 3, 6, 9 and the last (10): 4 x 40 batches at 0.25 s
    assert p["evals"] == 4 and p["seconds_per_eval_batch"] == pytest.approx(0.25)
    assert p["projected_train_seconds"] == pytest.approx(0.2 * 100 * 10)
    assert p["projected_seconds"] == pytest.approx(200 + 40)


def test_teacher_logits_cover_the_capped_epoch_only():
    from kdutils.distill.teachers import TeacherLogits

    tr, _ = _loaders()
    loader = tr.loader
    teacher = _net().eval()
    full = TeacherLogits(teacher, loader, amp="off")
    with rehearsal.rehearsing(steps=3, eval_batches=1):
        capped = TeacherLogits(teacher, loader, amp="off")
        logits = capped(0)
        seen = torch.cat([idx for _, _, idx in rehearsal.train_batches(loader)])
    assert capped.folder.name.endswith("-rehearsal") and capped.folder != full.folder
    filled = ~torch.isnan(logits).any(dim=1)
    assert filled.sum() == 30 and filled[seen].all()
    assert torch.allclose(logits[seen], full(0)[seen], atol=1e-6)
