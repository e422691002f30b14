"""Part 3 helpers (kdutils.parts.part3): student losses, recipes, tables, the teacher prerequisite."""

import matplotlib
import pytest
import torch
from torch import nn

from kdutils.core import data
from kdutils.core.objective import CrossEntropy
from kdutils.core.recipe import Recipe, lr_factor
from kdutils.distill.objectives import HintonKDLoss, KDLoss
from kdutils.distill.teachers import CachedLogits, TeacherLogits
from kdutils.models import build_model
from kdutils.parts import part3 as kd
from tests.helpers import CountingTeacher, tiny_loader

matplotlib.use("Agg")


# ---------------------------------------------------------------- losses and recipes
def test_student_objective_forms():
    source = CachedLogits(TeacherLogits(CountingTeacher(), tiny_loader(), cache=False))
    assert isinstance(kd.student_objective(0.0, None), CrossEntropy)
    mix = kd.student_objective(0.1, 5.0, teacher=source)
    assert isinstance(mix, KDLoss) and (mix.alpha, mix.tau, mix.form) == (0.1, 5.0, "kl") and mix.teacher is source
    hinton = kd.student_objective(30.0, 2.0, form="hinton", teacher=source)
    assert isinstance(hinton, HintonKDLoss) and (hinton.lam, hinton.tau) == (30.0, 2.0)
    with pytest.raises(ValueError, match="alpha"):
        kd.student_objective(30.0, 2.0, teacher=source)  # the lambda mix needs lambda in [0, 1]
    with pytest.raises(ValueError, match="temperature"):
        kd.student_objective(0.5, None, teacher=source)
    with pytest.raises(ValueError, match="teacher"):
        kd.student_objective(0.5, 2.0)
    with pytest.raises(ValueError, match="form"):
        kd.student_objective(0.5, 2.0, form="other")


def test_search_recipe_drops_the_rate_for_the_last_epochs():
    recipe = kd.search_recipe(5, lr_drop_epochs=2)
    assert isinstance(recipe, Recipe)
    assert recipe.optimizer == "adam" and recipe.lr == 1e-3 and recipe.betas == (0.9, 0.999)
    assert recipe.weight_decay == 1e-4 and recipe.milestones == (3,)
    steps = 10
    lrs = [recipe.lr * lr_factor(e * steps, 5 * steps, steps, recipe.schedule,
                                 milestones=recipe.milestones, gamma=recipe.gamma) for e in range(5)]
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-3, 1e-4, 1e-4])
    assert kd.search_recipe(2).schedule == "constant"
    with pytest.raises(ValueError, match="lr_drop_epochs"):
        kd.search_recipe(3, lr_drop_epochs=3)


def test_setup_validation_and_table():
    with pytest.raises(ValueError, match="pool_stride"):
        kd.resolve_setup("smoke", overrides={"pool_stride": 3})
    with pytest.raises(ValueError, match="weights"):
        kd.resolve_setup("smoke", overrides={"weights": "imagenet"})
    full = kd.resolve_setup("full", "/nonexistent")
    assert full["weights"] == "IMAGENET1K_V1" and full["pool_stride"] == 1
    table = kd.setup_table(full)
    for row in ("augmentation", "initialisation", "optimizer", "lr schedule", "momentum", "weight decay",
                "dropout", "batch size", "epochs"):
        assert row in table.index
    assert "ImageNet" in table.loc["initialisation", "teacher"]
    assert table.loc["epochs", "student"] == full["student_epochs"]


def test_teacher_param_groups_split_head_and_backbone():
    teacher = build_model("resnet18_cifar_8x8", 10, weights=None)
    head, body = kd.teacher_param_groups(teacher, 0.2)
    assert head["params"] == list(teacher.fc.parameters()) and head["lr_scale"] == 1.0
    assert body["lr_scale"] == 0.2
    assert len(head["params"]) + len(body["params"]) == len(list(teacher.parameters()))


# ---------------------------------------------------------------- teacher prerequisite
def test_missing_teacher_names_notebook_03(monkeypatch, capsys):
    setup = kd.resolve_setup("smoke")
    with pytest.raises(FileNotFoundError, match="part3_cifar10_resnet18_kd"):
        kd.teacher_for_students(setup)
    monkeypatch.setattr(kd, "train_teacher", lambda model, s, tr, te: {"run": "teacher", "loaders": (tr, te)})
    x, y = data.synthetic_images(20, 10, seed=2)
    images = data.ImageSet(torch.from_numpy(x), torch.from_numpy(y).long(), [str(c) for c in range(10)])
    model, record = kd.teacher_for_students(setup, images, images, train_if_missing=True)
    assert isinstance(model, nn.Module) and [ld.train for ld in record["loaders"]] == [True, False]
    assert "training the teacher here" in capsys.readouterr().out


# ---------------------------------------------------------------- students and tables
def test_train_student_records_params_and_skips_when_finished(tiny_cifar):
    _, tr, te = tiny_cifar
    setup = kd.resolve_setup("smoke")
    train_loader, test_loader = kd.make_loaders(tr.per_class(2), te.per_class(2), setup, device="cpu")
    table = TeacherLogits(CountingTeacher(side=32), train_loader)
    kw = dict(loaders=(train_loader, test_loader), recipe=kd.search_recipe(1), pool_stride=2, teacher_logits=table,
              form="hinton")
    rec = kd.train_student("part3_test", "T4_lam2", "smoke", lam=2, T=4, params={"round": 1}, **kw)
    assert rec["status"] == "complete" and rec["label"] == "T4_lam2"
    assert rec["params"] == {"T": 4.0, "lam": 2.0, "form": "hinton", "pool_stride": 2, "seed": 0, "round": 1}
    assert "HintonKDLoss" in rec["objective"]
    again = kd.train_student("part3_test", "T4_lam2", "smoke", lam=2, T=4, **kw)
    assert again["created"] == rec["created"]  # finished: loaded, not retrained
    plain = kd.train_student("part3_test", "no_kd", "smoke", lam=0, T=20, **kw)
    assert plain["params"]["T"] is None and plain["params"]["lam"] == 0.0


def test_kd_configs_and_table():
    configs = kd.kd_configs(0.1)
    assert [(c["lam"], c["T"]) for c in configs] == [(0.0, None), (1.0, 20.0), (0.1, 5.0), (0.1, 10.0), (0.1, 20.0)]
    assert len({c["run"] for c in configs}) == 5
    records = [
        {"label": "Teacher", "params": {}, "n_params": 11_181_642, "epochs_done": 2,
         "last": {"train_top1": 91.0, "test_top1": 90.5}},
        {"label": "KD1", "params": {"T": 5.0, "lam": 0.0214}, "n_params": 676_294, "epochs_done": 2,
         "last": {"train_top1": 70.0, "test_top1": 68.25}},
    ]
    table = kd.kd_table(records)
    assert list(table.index) == ["Teacher", "KD1"]
    assert table.loc["Teacher", "T"] == "-" and table.loc["KD1", "lambda"] == "0.0214"
    assert table.loc["Teacher", "parameters"] == "11.18M"
    assert table.loc["KD1", "test top-1 (%)"] == 68.25


def _student(run, label, lam, T, top1, profile="quick"):
    return {"part": kd.PART, "run": run, "label": label, "profile": profile, "status": "complete",
            "params": {"T": T, "lam": lam}, "n_params": 676_294, "epochs_done": 4,
            "last": {"train_top1": top1 + 5, "test_top1": top1}}


def test_kd_table_folds_seeds_into_mean_and_std():
    records = [_student(kd.seeded_name("student_lam0", s), "no KD", 0.0, None, v) for s, v in enumerate((30, 32, 34))]
    records += [_student(kd.seeded_name("KD1_T5_lam0.1", s), "KD1", 0.1, 5.0, v) for s, v in enumerate((40, 41))]
    table = kd.kd_table(records)
    assert list(table.index) == ["no KD", "KD1"]
    assert table.loc["no KD", "seeds"] == 3 and table.loc["no KD", "test top-1 (%)"] == 32.0
    assert table.loc["no KD", "test top-1 std"] == 2.0 and table.loc["KD1", "test top-1 (%)"] == 40.5


def test_findings_judge_kd_rows_against_the_seed_spread():
    base = [_student(kd.seeded_name("student_lam0", s), "no KD", 0.0, None, v) for s, v in enumerate((30, 34, 38))]
    close = [_student(kd.seeded_name("KD1_T5_lam0.1", s), "KD1", 0.1, 5.0, v) for s, v in enumerate((33, 37, 41))]
    far = [_student(kd.seeded_name("KD2_T10_lam0.1", s), "KD2", 0.1, 10.0, v) for s, v in enumerate((60, 61, 62))]
    text = " ".join(kd.findings(base + close + far, n_test=2000))
    # KD1: +3 points, seed spread sqrt(16 + 16) = 5.66 > noise band -> inside; KD2: +27 -> beyond
    assert "KD1 is ahead of the student without KD by 3.00 points, inside the noise band ±5.66" in text
    assert "KD2 is ahead of the student without KD by 27.00 points, beyond" in text
    assert "34.00 ± 4.00 (3 seeds)" in text


def test_quick_teacher_is_a_stand_in_with_more_images():
    setup = kd.resolve_setup("quick")
    assert setup["teacher_arch"] != kd.TEACHER_ARCH and setup["teacher_train_per_class"] > setup["train_per_class"]
    assert len(setup["seeds"]) >= 3
    assert "stand-in" in kd.teacher_label(setup["teacher_arch"])
    assert kd.resnet18_to_inspect(kd.build_teacher(setup)).layer4 is not None
    with pytest.raises(ValueError, match="weights='random'"):
        kd.resolve_setup("quick", overrides={"weights": "IMAGENET1K_V1"})


def test_search_scatter_uses_log_axes():
    records = [{"params": {"T": t, "lam": lam, "round": r}, "val": {"top1": acc}}
               for t, lam, r, acc in ((1.5, 0.02, 1, 30.0), (40.0, 3.0, 1, 45.0), (20.0, 1.0, 2, 50.0))]
    records.append({"params": {"T": None, "lam": 0.0}, "val": {"top1": 20.0}})  # no KD: left out
    fig = kd.search_scatter(records, "t", ranges={"T": (10, 60), "lam": (0.5, 5)})
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert sum(len(c.get_offsets()) for c in ax.collections) == 3 + 1  # trials + the ring around the best
    with pytest.raises(ValueError, match="params.T"):
        kd.search_scatter(records[-1:])


def test_student_recipe_comes_from_the_profile_settings():
    setup = kd.resolve_setup("smoke")
    r = kd.student_recipe_for(setup)
    assert (r.epochs, r.lr, r.grad_clip, r.warmup_epochs) == (setup["student_epochs"], setup["student_lr"],
                                                              setup["student_grad_clip"], 0)
    assert (r.optimizer, r.weight_decay, r.nesterov) == (setup["optimizer"], setup["weight_decay"], setup["nesterov"])


def test_random_teacher_is_drawn_from_the_setup_seed():
    """The teacher's random initialisation comes from ``setup["seed"]``, not from whatever
    state the global generator is in (torch seeds a new process randomly)."""
    setup = kd.resolve_setup("smoke")
    torch.manual_seed(123)
    a = kd.build_teacher(setup, force=True)
    torch.rand(7)
    b = kd.build_teacher(setup, force=True)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    other = kd.build_teacher(kd.resolve_setup("smoke", overrides={"seed": 1}), force=True)
    assert not torch.equal(other.fc.weight, a.fc.weight)


@pytest.mark.parametrize("bad, says", [
    (dict(lam="abc"), "lam = 'abc' (str): a str is not a number; allowed: a number >= 0"),
    (dict(run_name=10), "run_name = 10 (int): an int is not text"),
    (dict(T=True), "T = True (bool): a bool is not a number"),
    (dict(mode="sweep"), "mode = 'sweep' (str): not one of the choices; allowed: one of '', 'all', 'single'"),
])
def test_kd_notebook_rejects_a_bad_parameter_before_any_work(bad, says):
    """Issue 13: ``-p lam abc`` failed late with "Unknown format code 'g'", ``-p run_name 10`` was taken."""
    from tests.helpers import run_resolve_cell

    with pytest.raises(ValueError) as err:
        run_resolve_cell("part3_cifar10_resnet18_kd.ipynb", **bad)
    assert says in str(err.value) and "nothing was run" in str(err.value)


def test_search_notebook_rejects_a_reversed_range():
    from tests.helpers import run_resolve_cell

    with pytest.raises(ValueError, match=r"T_range = \[100, 1\] \(list\): not in increasing order"):
        run_resolve_cell("part3_hparam_search.ipynb", T_range=[100, 1])


# ---------------------------------------------------------------- section C: the search on a validation split
def _tiny_cifar10(n_per_class: int = 4):
    images, labels = data.synthetic_images(10 * n_per_class, 10, (32, 32), seed=2)
    return data.ImageSet(torch.as_tensor(images), torch.as_tensor(labels, dtype=torch.long), [str(c) for c in range(10)])


def test_holdout_split_keeps_every_class_in_both_parts_and_is_disjoint():
    images = _tiny_cifar10(5)
    fit_set, val_set = kd.holdout_split(images, 0.2, seed=1)
    assert len(fit_set) == 40 and len(val_set) == 10
    assert sorted(val_set.labels.tolist()) == list(range(10))
    fit_rows = {tuple(x.flatten()[:16].tolist()) for x in fit_set.images}
    assert not any(tuple(x.flatten()[:16].tolist()) in fit_rows for x in val_set.images)
    assert torch.equal(kd.holdout_split(images, 0.2, seed=1)[1].images, val_set.images)
    with pytest.raises(ValueError, match="validation fraction"):
        kd.holdout_split(images, 1.0)


def test_search_ranks_trials_on_validation_and_never_tests_them():
    import optuna

    from kdutils.core import hparam

    setup = kd.resolve_setup("smoke")
    fit_set, val_set = kd.holdout_split(_tiny_cifar10(4), 0.25, seed=0)
    loaders = kd.make_loaders(fit_set, val_set, setup, batch_size=8, device="cpu")
    torch.manual_seed(0)
    teacher = build_model("student_cnn", 10, pool_stride=2)
    study = optuna.create_study(direction="maximize", sampler=hparam.make_sampler("random", 0))
    trials = kd.run_search(study, 2, "smoke", T_range=(1, 100), lam_range=(0.01, 100), round_no=1, loaders=loaders,
                           epochs=1, pool_stride=2, teacher_logits=TeacherLogits(teacher, loaders[0]), seed=0)
    assert len(trials) == 2 and all(r["evaluated_on"] == "validation" and r["n_val"] == 10 for r in trials)
    assert all("test_top1" not in h for r in trials for h in r["history"])  # the test set is never seen
    assert [t.value for t in study.trials] == [r["val"]["top1"] for r in trials]
    assert kd.run_search(study, 2, "smoke", T_range=(1, 100), lam_range=(0.01, 100), round_no=1, loaders=loaders,
                         epochs=1, pool_stride=2, teacher_logits=None) == trials  # finished: nothing retrained
    table = kd.search_table(trials)
    assert list(table.columns)[-1] == "validation top-1 (%)" and len(table) == 2
    text = " ".join(kd.findings(trials))
    assert "ranked on images held out from training" in text and "validation top-1" in text



def test_report_ranks_search_trials_on_validation_and_tests_only_the_finals():
    from kdutils.core import report_spec as S

    def trial(i, val, test=None):  # ``test``: what a record that leaked the test set would hold
        rec = {"run": f"trial{i}", "part": kd.SEARCH_PART, "status": "complete", "params": {"T": 2.0, "lam": 0.5},
               "val": {"top1": val}, "epochs_done": 1}
        return {**rec, "best": {"test_top1": test}} if test is not None else rec

    trials = [trial(i, val) for i, val in enumerate([10.0, 50.0, 30.0, 40.0, 20.0, 45.0])]
    trials[0]["best"] = {"test_top1": 99.0}  # the worst trial on validation must not rise by a test number
    finals = [{"run": n, "part": kd.SEARCH_PART, "status": "complete", "params": {"T": 2.0, "lam": lam},
               "best": {"test_top1": top1}, "last": {"test_top1": top1}, "epochs_done": 1}
              for n, lam, top1 in (("final_no_kd", 0.0, 60.0), ("final_T2_lam0.5", 0.5, 62.0))]
    search_table, final_table = [t for t in kd.REPORT.tables if t.part == kd.SEARCH_PART]
    rows, note = S.select_rows(trials + finals, search_table, kd.REPORT)
    assert [r["run"] for r in rows] == ["trial1", "trial5", "trial3", "trial2"]  # the 4 best by val top-1
    assert "val top-1" in note
    rows, _ = S.select_rows(trials + finals, final_table, kd.REPORT)
    assert [r["run"] for r in rows] == ["final_no_kd", "final_T2_lam0.5"]
    assert S.TOP1 not in search_table.columns and S.TOP1 in final_table.columns
