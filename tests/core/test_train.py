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
