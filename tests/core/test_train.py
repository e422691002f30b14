import pytest
import torch
from torch import nn

from kdutils.core import records, train
from kdutils.core.loader import loaders_for
from kdutils.core.recipe import Recipe
from kdutils.core.train import Runtime
from kdutils.distill import objectives
from kdutils.distill.teachers import LiveTeacher

QUIET = Runtime(log="off")


def _net(seed=0, dropout=0.2):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(8, 10))


@pytest.fixture
def loaders(tiny_cifar):
    _, tr, te = tiny_cifar
    return loaders_for(tr, te, 32, (0.5,) * 3, (0.25,) * 3, device="cpu", padding=4)


def test_fit_learns_and_writes_a_record(loaders):
    tr, te = loaders
    run = train.Run("unit", "learn", "smoke", params={"lr": 0.05})
    rec = train.fit(_net(), tr, te, Recipe(4, lr=0.05), run=run, runtime=QUIET)
    assert rec["status"] == "complete" and rec["epochs_done"] == 4
    assert rec["best"]["test_top1"] > 30  # 10 classes: chance is 10%
    assert rec["history"][-1]["train_loss"] < rec["history"][0]["train_loss"]
    on_disk = records.load_record("unit", "learn", "smoke")
    assert on_disk["n_params"] == sum(p.numel() for p in _net().parameters())
    assert on_disk["params"] == {"lr": 0.05} and on_disk["flops"] > 0
    assert {"train_loss", "train_top1", "test_top1", "test_top5", "lr", "seconds"} <= set(on_disk["history"][0])


def test_resume_after_interrupt_gives_identical_weights_and_history(loaders):
    tr, te = loaders
    ref = _net()
    rec_ref = train.fit(ref, tr, te, Recipe(3, lr=0.05), run=train.Run("unit", "ref", "smoke"), runtime=QUIET)

    def interrupt(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.fit(_net(), tr, te, Recipe(3, lr=0.05), run=train.Run("unit", "cut", "smoke"), runtime=QUIET,
                  callbacks=[interrupt])
    assert records.load_record("unit", "cut", "smoke")["status"] == "running"
    resumed = _net(seed=123)  # different initial weights: everything must come from the checkpoint
    rec = train.fit(resumed, tr, te, Recipe(3, lr=0.05), run=train.Run("unit", "cut", "smoke"), runtime=QUIET)
    for a, b in zip(ref.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    strip = lambda h: [{k: v for k, v in r.items() if "seconds" not in k} for r in h]  # noqa: E731
    assert strip(rec["history"]) == strip(rec_ref["history"])


def test_finished_run_is_skipped_and_its_weights_loaded(loaders, capsys):
    tr, te = loaders
    run = train.Run("unit", "done", "smoke")
    a = _net()
    train.fit(a, tr, te, Recipe(1), run=run, runtime=QUIET)
    b = _net(seed=5)
    rec = train.fit(b, tr, te, Recipe(1), run=run)
    assert "finished before" in capsys.readouterr().out
    assert rec["status"] == "complete"
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(x, y)


def test_budget_stops_cleanly(loaders):
    tr, te = loaders
    rec = train.fit(_net(), tr, te, Recipe(50), run=train.Run("unit", "budget", "smoke"),
                    runtime=Runtime(budget_s=1e-6, log="off"))
    assert rec["status"] == "budget" and rec["epochs_done"] == 1 and rec["within_budget"] is False
    assert rec["last"]["test_top1"] is not None  # evaluated although stopped


def test_nan_loss_stops_with_clear_message(loaders):
    tr, te = loaders
    with pytest.raises(FloatingPointError, match="NaN"):
        train.fit(_net(), tr, te, Recipe(2, lr=1e30, momentum=0.0), runtime=Runtime(log="off", nan_check_every=1))


def test_teacher_is_frozen_and_in_eval(loaders):
    tr, te = loaders
    teacher = _net(seed=1)
    teacher.train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    train.fit(_net(), tr, te, Recipe(1), objectives.KDLoss(0.5, 4.0, teacher=LiveTeacher(teacher)), runtime=QUIET)
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k  # BN running stats untouched too (eval mode)
    with pytest.raises(ValueError, match="teacher"):
        train.fit(_net(), tr, te, Recipe(1), objectives.KDLoss(0.5, 4.0), runtime=QUIET)


def test_load_run_weights_names_the_missing_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="unit/absent.*task-1 cell"):
        train.load_run_weights(_net(), train.Run("unit", "absent", "smoke"), produced_by="the task-1 cell")


def test_bad_parameters(loaders):
    tr, te = loaders
    with pytest.raises(TypeError, match="Recipe"):
        train.fit(_net(), tr, te, {"epochs": 1})
    with pytest.raises(ValueError, match="amp"):
        train.fit(_net(), tr, te, Recipe(1), runtime=Runtime(amp="int4", log="off"))
    with pytest.raises(ValueError, match="budget_s"):
        Runtime(budget_s=0)
    with pytest.raises(ValueError, match="log"):
        Runtime(log="verbose")


def test_evaluate_top5_and_predict(loaders):
    _, te = loaders
    net = _net()
    ev = train.evaluate(net, te, device="cpu")
    assert 0 <= ev["top1"] <= ev["top5"] <= 100 and ev["n"] == 100
    logits = train.predict_logits(net, te, device="cpu")
    assert logits.shape == (100, 10)


def test_finished_run_with_other_settings_is_not_reused_silently(loaders):
    tr, te = loaders
    train.fit(_net(), tr, te, Recipe(1), run=train.Run("unit", "cfg", "smoke", params={"lr": 0.1}), runtime=QUIET)
    with pytest.raises(ValueError, match="lr: 0.1 -> 0.2"):
        train.fit(_net(), tr, te, Recipe(1), run=train.Run("unit", "cfg", "smoke", params={"lr": 0.2}), runtime=QUIET)
    with pytest.raises(ValueError, match="epochs: 1 -> 2"):
        train.fit(_net(), tr, te, Recipe(2), run=train.Run("unit", "cfg", "smoke", params={"lr": 0.1}), runtime=QUIET)
    rec = train.fit(_net(), tr, te, Recipe(2), run=train.Run("unit", "cfg", "smoke", params={"lr": 0.2}),
                    runtime=Runtime(force=True, log="off"))
    assert rec["epochs_done"] == 2


def test_record_keeps_recipe_and_run_extra(loaders):
    tr, te = loaders
    recipe = Recipe(1, lr=0.05, weight_decay=1e-4)
    rec = train.fit(_net(), tr, te, recipe, run=train.Run("unit", "extra", "smoke", extra={"label": "L"}),
                    runtime=QUIET)
    assert rec["recipe"] == recipe.as_dict() and rec["recipe"]["weight_decay"] == 1e-4
    assert rec["label"] == "L" and rec["params"] == {}  # extra goes to the record, never compared


def test_callbacks_see_every_row_and_can_add_columns(loaders):
    tr, te = loaders
    seen = []

    def note(epoch, row):
        seen.append(epoch)
        row["extra_metric"] = 10 * epoch

    rec = train.fit(_net(), tr, te, Recipe(2), run=train.Run("unit", "cb", "smoke"), runtime=QUIET,
                    callbacks=[note])
    assert seen == [0, 1] and [r["extra_metric"] for r in rec["history"]] == [0, 10]


def test_objective_parameters_are_optimised_and_features_reach_it(loaders):
    """An objective with its own trainable parameters (a hint regressor) is trained with
    the model, and the student modules it names arrive in ``batch.features``."""
    tr, te = loaders
    teacher = _net(seed=1)
    objective = objectives.HintLoss(LiveTeacher(teacher, feature_layers=["0"]), student_layer="0",
                                    teacher_layer="0", student_channels=8, teacher_channels=8, beta=1.0)
    before = objective.regressor.weight.detach().clone()
    rec = train.fit(_net(), tr, te, Recipe(1, lr=0.05), objective, run=train.Run("unit", "hint", "smoke"),
                    runtime=QUIET)
    assert not torch.equal(before, objective.regressor.weight.detach())
    assert rec["history"][0]["train_hint"] > 0 and "train_ce" in rec["history"][0]
    ck = train.load_checkpoint(train.Run("unit", "hint", "smoke").checkpoint_path)
    assert set(ck["objective"]) == {"regressor.weight"}  # the teacher's weights stay out of checkpoints


# --------------------------------------------------------------------------- issue 13: reliability
def _other_data_loaders(tiny_cifar_root, tmp_path):
    from kdutils.core import data

    root = data.make_cifar_pickles(tmp_path / "other", "cifar10", n_train=200, n_test=100, seed=7)
    tr = data.load_cifar("cifar10", root, train=True, check_md5=False)
    te = data.load_cifar("cifar10", root, train=False, check_md5=False)
    return loaders_for(tr, te, 32, (0.5,) * 3, (0.25,) * 3, device="cpu", padding=4)


def test_changed_data_recipe_or_seed_never_reuses_a_finished_run(loaders, tiny_cifar, tmp_path):
    tr, te = loaders
    run = train.Run("unit", "ident", "smoke")
    train.fit(_net(), tr, te, Recipe(1, lr=0.05), run=run, runtime=QUIET)
    rec = records.load_record("unit", "ident", "smoke")
    assert set(rec["data_fingerprint"]) == {"train", "test"} and rec["seed"] == 0
    other_tr, other_te = _other_data_loaders(tiny_cifar[0], tmp_path)
    with pytest.raises(ValueError, match=r"training data .*force=True.*another run name"):
        train.fit(_net(), other_tr, other_te, Recipe(1, lr=0.05), run=run, runtime=QUIET)
    with pytest.raises(ValueError, match=r"test data"):
        train.fit(_net(), tr, other_te, Recipe(1, lr=0.05), run=run, runtime=QUIET)
    with pytest.raises(ValueError, match=r"recipe.lr: 0.05 -> 0.1"):
        train.fit(_net(), tr, te, Recipe(1, lr=0.1), run=run, runtime=QUIET)
    with pytest.raises(ValueError, match=r"seed: 0 -> 3"):
        train.fit(_net(), tr, te, Recipe(1, lr=0.05), run=run, runtime=Runtime(seed=3, log="off"))
    assert train.fit(_net(), tr, te, Recipe(1, lr=0.05), run=run, runtime=QUIET)["status"] == "complete"


def test_a_record_from_before_the_data_fingerprint_is_reused_with_a_warning(loaders):
    tr, te = loaders
    run = train.Run("unit", "old", "smoke")
    train.fit(_net(), tr, te, Recipe(1), run=run, runtime=QUIET)
    rec = records.load_record("unit", "old", "smoke")
    del rec["data_fingerprint"]
    records.save_record(rec)
    with pytest.warns(UserWarning, match="data fingerprint.*cannot check.*force=True"):
        again = train.fit(_net(), tr, te, Recipe(1), run=run, runtime=QUIET)
    assert again["status"] == "complete"


def test_resuming_with_other_data_raises(loaders, tiny_cifar, tmp_path):
    tr, te = loaders

    def interrupt(epoch, row):
        if epoch == 1:  # after the first epoch's checkpoint
            raise KeyboardInterrupt

    run = train.Run("unit", "cut-data", "smoke")
    with pytest.raises(KeyboardInterrupt):
        train.fit(_net(), tr, te, Recipe(3), run=run, runtime=QUIET, callbacks=[interrupt])
    other_tr, _ = _other_data_loaders(tiny_cifar[0], tmp_path)
    with pytest.raises(ValueError, match=r"interrupted run .*training data.*force=True"):
        train.fit(_net(), other_tr, te, Recipe(3), run=run, runtime=QUIET)


def test_a_training_set_smaller_than_a_batch_is_an_error_not_a_complete_run(tiny_cifar):
    from kdutils.core.loader import GpuLoader

    _, tr, te = tiny_cifar
    small = GpuLoader(tr.subset(range(9)), 32, train=True, device="cpu")
    with pytest.raises(ValueError, match=r"9 training images, batch size 32, drop_last=True.*0 steps"):
        train.fit(_net(), small, None, Recipe(1), run=train.Run("unit", "empty", "smoke"), runtime=QUIET)
    assert records.load_record("unit", "empty", "smoke") is None


def test_a_damaged_record_is_moved_aside_and_the_run_trains(loaders):
    tr, te = loaders
    path = records.record_path("unit", "bad", "smoke")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"status": "compl')
    with pytest.warns(UserWarning, match=r"bad.json is damaged.*Moved it aside"):
        rec = train.fit(_net(), tr, te, Recipe(1), run=train.Run("unit", "bad", "smoke"), runtime=QUIET)
    assert rec["status"] == "complete"
    (kept,) = path.parent.glob("bad.json.corrupt-*")
    assert kept.read_text() == '{"status": "compl'  # the user's file is kept, never deleted


@pytest.mark.parametrize("content", [b"", b"garbage, not a checkpoint", "truncated"])
def test_a_damaged_checkpoint_names_the_file_and_the_way_on(loaders, content):
    tr, te = loaders
    run = train.Run("unit", "ck", "smoke")
    train.fit(_net(), tr, te, Recipe(2), run=run, runtime=QUIET)
    good = run.checkpoint_path.read_bytes()
    run.checkpoint_path.write_bytes(good[: len(good) // 2] if content == "truncated" else content)
    records.save_record(dict(records.load_record("unit", "ck", "smoke"), status="running"))  # interrupted
    with pytest.raises(train.CorruptCheckpointError, match=r"ck.pt.*(mv|aside).*force=True"):
        train.fit(_net(), tr, te, Recipe(2), run=run, runtime=QUIET)
    assert train.fit(_net(), tr, te, Recipe(2), run=run, runtime=Runtime(force=True, log="off"))["epochs_done"] == 2


def test_a_checkpoint_of_another_architecture_names_the_file_and_both_models(loaders):
    tr, te = loaders
    run = train.Run("unit", "arch", "smoke")
    train.fit(_net(), tr, te, Recipe(1), run=run, runtime=QUIET)

    class Wider(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 16, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

        def forward(self, x):
            return self.body(x)

    with pytest.raises(ValueError, match=r"arch.pt of run unit/arch holds the weights of Sequential.*given now \(Wider\)"):
        train.fit(Wider(), tr, te, Recipe(1), run=run, runtime=QUIET)
    with pytest.raises(ValueError, match=r"Sequential.*Wider"):
        train.load_run_weights(Wider(), run)


def test_an_unwritable_output_folder_is_reported_before_training(loaders, monkeypatch):
    tr, te = loaders
    trained = []
    monkeypatch.setattr(train, "_start", lambda *a, **k: trained.append(1) / 0)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(train.tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError, match=r"cannot write to .*unit.*KD_OUTPUT_ROOT"):
        train.fit(_net(), tr, te, Recipe(1), run=train.Run("unit", "ro", "smoke"), runtime=QUIET)
    assert trained == []


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"),
                                     RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter "
                                                  "failed writing file data/3: file write failed")])
def test_disk_full_while_checkpointing_says_so_and_keeps_the_previous_checkpoint(loaders, monkeypatch, failure):
    import torch as _torch

    tr, te = loaders
    run = train.Run("unit", "full", "smoke")
    real_save, calls = _torch.save, []

    def save(obj, f, *a, **k):
        calls.append(f)
        if len(calls) > 1:  # the first epoch's checkpoint is written, the second finds the disk full
            raise failure
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(_torch, "save", save)
    with pytest.raises(OSError, match=r"disk full while writing .*full.pt; the previous checkpoint is intact"):
        train.fit(_net(), tr, te, Recipe(2), run=run, runtime=QUIET)
    assert train.load_checkpoint(run.checkpoint_path)["epoch"] == 1
    assert [p.name for p in run.checkpoint_path.parent.iterdir()] == ["full.pt"]  # no temporary file left
