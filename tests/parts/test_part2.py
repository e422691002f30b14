"""Part 2: PS-KD targets, schedule and resume; Tf-KD reg's soft target; the wiring of the
KD tasks (which network is trained, which one teaches); the ablation table."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdutils.core import records, train
from kdutils.core.loader import loaders_for
from kdutils.core.objective import Batch
from kdutils.core.recipe import Recipe
from kdutils.core.train import Runtime
from kdutils.distill import objectives
from kdutils.models import count_params
from kdutils.parts import part2
from kdutils.parts.part1 import CIFAR100_RECIPE

# ----------------------------------------------------------------------------- PS-KD


def test_pskd_alpha_schedule_edges():
    assert objectives.pskd_alpha(0, 1, 0.8) == 0.8  # a one-epoch run uses alpha_T at once
    assert objectives.pskd_alpha(7, 5, 0.8) == pytest.approx(0.8)  # clamped after the last epoch
    steps = [objectives.pskd_alpha(e, 10, 0.6) for e in range(10)]
    assert steps == sorted(steps) and steps[0] == 0.0 and steps[-1] == pytest.approx(0.6)


def test_pskd_targets_are_distributions_built_from_the_latest_prediction():
    obj = objectives.PSKDLoss(num_samples=3, num_classes=4, alpha_T=1.0, epochs=2)
    idx, y = torch.tensor([0, 1, 2]), torch.tensor([3, 0, 1])
    first, second = torch.randn(3, 4), torch.randn(3, 4)
    x = torch.zeros(3, 3, 4, 4)
    obj(first, Batch(x, y, idx, epoch=0))
    obj(second, Batch(x, y, idx, epoch=0))  # the memory keeps only the latest prediction
    target = obj.targets_for(Batch(x, y, idx, epoch=1))  # alpha_1 = alpha_T = 1: the prediction itself
    assert torch.allclose(target, F.softmax(second, 1))
    assert torch.allclose(target.sum(1), torch.ones(3))
    assert bool(obj.teacher.filled.all())


def test_pskd_memory_survives_checkpoint_and_resume_through_fit(tiny_cifar):
    _, tr, te = tiny_cifar
    tr, te = tr.subset(torch.arange(96)), te.subset(torch.arange(32))
    train_loader, test_loader = loaders_for(tr, te, 32, (0.5,) * 3, (0.25,) * 3, device="cpu")

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(8, 10))

    def objective():
        return objectives.PSKDLoss(len(tr), 10, alpha_T=0.8, epochs=3)

    ref_obj = objective()
    quiet = Runtime(log="off")
    train.fit(net(), train_loader, test_loader, Recipe(3, lr=0.05), ref_obj, train.Run("unit", "pskd_ref", "smoke"),
              runtime=quiet)

    def interrupt(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.fit(net(), train_loader, test_loader, Recipe(3, lr=0.05), objective(),
                  train.Run("unit", "pskd_cut", "smoke"), runtime=quiet, callbacks=[interrupt])
    saved = train.load_checkpoint(train.Run("unit", "pskd_cut", "smoke").checkpoint_path)
    assert saved["epoch"] == 1 and saved["objective"]["teacher.filled"].sum() > 0  # the memory is in the checkpoint

    resumed_obj = objective()  # empty memory: everything must come from the checkpoint
    resumed = net()
    train.fit(resumed, train_loader, test_loader, Recipe(3, lr=0.05), resumed_obj,
              train.Run("unit", "pskd_cut", "smoke"), runtime=quiet)
    assert torch.equal(resumed_obj.teacher.memory, ref_obj.teacher.memory)
    assert torch.equal(resumed_obj.teacher.filled, ref_obj.teacher.filled)
    ref_weights = train.load_checkpoint(train.Run("unit", "pskd_ref", "smoke").checkpoint_path)["model"]
    for k, v in resumed.state_dict().items():
        assert torch.equal(v, ref_weights[k]), k


# ----------------------------------------------------------------------------- Tf-KD reg


def test_manual_soft_target_is_label_smoothing_shaped():
    y = torch.tensor([2, 0])
    q = objectives.manual_soft_target(y, 5, a=0.6)
    assert torch.allclose(q[:, [2, 0]].diagonal(), torch.tensor([0.6, 0.6]))
    assert torch.allclose(q[0, [0, 1, 3, 4]], torch.full((4,), 0.1))
    uniform = objectives.manual_soft_target(y, 5, a=0.2)  # a = 1/K: nothing is preferred
    assert torch.allclose(uniform, torch.full((2, 5), 0.2))
    with pytest.raises(ValueError):
        objectives.manual_soft_target(y, 5, a=1.5)


def test_tfkd_reg_loss_matches_hand_computation():
    z, y = torch.randn(4, 6), torch.tensor([0, 5, 2, 2])
    alpha, tau, a = 0.3, 5.0, 0.8
    batch = Batch(torch.zeros(4, 3, 4, 4), y)
    loss, parts = objectives.TfKDRegLoss(6, alpha, tau, a)(z, batch)
    q = F.softmax(objectives.manual_soft_target(y, 6, a) / tau, 1)
    kl = (q * (q.log() - F.log_softmax(z / tau, 1))).sum(1).mean()
    expected = (1 - alpha) * F.cross_entropy(z, y) + alpha * tau**2 * kl
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["reg"].item() == pytest.approx(tau**2 * kl.item(), rel=1e-5)
    no_reg, _ = objectives.TfKDRegLoss(6, 0.0, tau, a)(z, batch)
    assert no_reg.item() == pytest.approx(F.cross_entropy(z, y).item(), rel=1e-6)


# ----------------------------------------------------------------------------- wiring

TEACHER, STUDENT, WIDTH = "wrn_16_2", "resnet20", 0.25


def _plan(alpha=0.9, tau=4.0):
    return part2.part2_plan(TEACHER, STUDENT, alpha, tau, width_mult=WIDTH)


def test_plan_chains_teachers_and_names_runs_uniquely():
    plan = _plan()
    assert plan["task2"].teacher is plan["task1_teacher"] and plan["task2"].arch == STUDENT
    assert plan["task3"].teacher is plan["task2"] and plan["task3"].arch == STUDENT
    assert plan["task4"].teacher is plan["task1_student"] and plan["task4"].arch == TEACHER  # reverse KD
    assert plan["tfkd_self"].teacher is plan["task1_student"] and plan["tfkd_self"].arch == STUDENT
    assert all(plan[k].teacher is None for k in ("task1_teacher", "task1_student", "tfkd_reg", "no_ls", "pskd"))
    names = [e.name for e in plan.values()]
    assert len(set(names)) == len(names)
    for n in names:
        records.check_name(n)  # usable as file names
    # other alpha/tau: the KD runs get other names, the task-1 baselines are shared
    other = _plan(alpha=0.5, tau=2.0)
    assert other["task1_student"].name == plan["task1_student"].name
    assert other["task3"].name != plan["task3"].name
    with pytest.raises(ValueError, match="teacher"):
        part2.Experiment("x", "Task 2", "kd", STUDENT)


@pytest.fixture
def tiny_setup(tiny_cifar):
    _, tr, te = tiny_cifar
    tr, te = tr.subset(torch.arange(64)), te.subset(torch.arange(32))
    recipe = dict(CIFAR100_RECIPE["smoke"])
    loaders = loaders_for(tr, te, recipe["batch_size"], (0.5,) * 3, (0.25,) * 3, device="cpu")
    return recipe, loaders


def test_reverse_kd_trains_the_teacher_architecture_taught_by_the_frozen_student(tiny_setup):
    recipe, (tr, te) = tiny_setup
    plan = _plan()
    # Task 2 before task 1: the missing prerequisite is named, nothing is trained.
    with pytest.raises(FileNotFoundError, match="Task 1 cell"):
        part2.build_experiment(plan["task2"], "smoke", recipe, tr.num_samples, 10)
    part2.train_experiment(plan["task1_student"], "smoke", recipe, tr, te, 10)

    model, teacher, objective = part2.build_experiment(plan["task4"], "smoke", recipe, tr.num_samples, 10)
    teacher_arch = part2.build_experiment(plan["task1_teacher"], "smoke", recipe, tr.num_samples, 10)[0]
    student_arch = part2.build_experiment(plan["task1_student"], "smoke", recipe, tr.num_samples, 10)[0]
    assert count_params(model) == count_params(teacher_arch) > count_params(student_arch)
    assert count_params(teacher) == count_params(student_arch)
    trained = train.load_checkpoint(plan["task1_student"].run("smoke").checkpoint_path)["model"]
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, trained[k]), k  # the teacher is the trained task-1 student ...
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())  # ... frozen
    assert all(p.requires_grad for p in model.parameters())
    assert isinstance(objective, objectives.KDLoss) and (objective.alpha, objective.tau) == (0.9, 4.0)


def test_objectives_of_the_extras(tiny_setup):
    recipe, (tr, _) = tiny_setup
    plan = _plan()

    def objective(key):
        return part2.make_objective(plan[key], recipe, tr.num_samples, 10)

    assert objective("task1_student").label_smoothing == recipe["label_smoothing"]
    assert objective("no_ls").label_smoothing == 0.0
    reg = objective("tfkd_reg")
    assert isinstance(reg, objectives.TfKDRegLoss) and reg.a == part2.TFKD_REG["a"]
    pskd = objective("pskd")
    assert pskd.teacher.memory.shape == (tr.num_samples, 10) and pskd.epochs == recipe["epochs"]
    assert pskd.alpha_T == part2.PSKD_ALPHA_T


# ----------------------------------------------------------------------------- table


def _record(exp, top1, n_params=1000):
    return {"run": exp.name, "params": exp.run("smoke").params, "n_params": n_params,
            "best": {"test_top1": top1, "test_top5": top1 + 20}, "last": {"test_top1": top1 - 1}}


def test_kd_tasks_table_gain_is_over_the_baseline_of_the_same_network():
    plan = _plan()
    recs = [_record(plan["task1_teacher"], 60.0, 5000), _record(plan["task1_student"], 50.0),
            _record(plan["task2"], 53.5), _record(plan["task4"], 58.0, 5000)]
    table = part2.kd_tasks_table(recs)
    assert list(table["gain"]) == pytest.approx([0.0, 0.0, 3.5, -2.0])
    assert table.loc[2, "teacher"].startswith(plan["task1_teacher"].label)
    assert table.loc[2, "alpha"] == 0.9 and table.loc[2, "tau"] == 4.0
    lonely = part2.kd_tasks_table([_record(plan["task2"], 53.5)])
    assert math.isnan(lonely.loc[0, "gain"])

    noise = part2.gain_noise(table, n_test=10_000)  # baselines near 55 %: about 1.4 points
    assert noise == pytest.approx(2 * math.sqrt(2) * 100 * math.sqrt(0.55 * 0.45 / 10_000))
    text = " ".join(part2.findings(recs, n_test=10_000))
    assert "+3.50 points" in text and "a gain beyond" in text and "a loss beyond" in text
    assert "(a gap of +10.00 points)" in text and "not measurably better" not in text
    small = " ".join(part2.findings(recs, n_test=100))  # noise about 14 points
    assert "inside the" in small and "not measurably better" in small and "0 of 2 methods" in small


def _seeded(exp, seed, top1, n_params=1000):
    run = exp.run("smoke", seed)
    return {"run": run.name, "params": run.params, "n_params": n_params,
            "best": {"test_top1": top1, "test_top5": top1 + 20}, "last": {"test_top1": top1 - 1}}


def test_student_rows_fold_their_seeds_and_gains_are_judged_against_the_spread():
    plan = _plan()
    assert part2.seeds_of(plan["task1_teacher"], (0, 1, 2)) == (0,)  # teachers train once
    assert part2.seeds_of(plan["task2"], (0, 1, 2)) == (0, 1, 2)
    assert plan["task2"].run("smoke", 2).name == plan["task2"].name + "_seed2"
    recs = [_seeded(plan["task1_teacher"], 0, 60.0, 5000)]
    recs += [_seeded(plan["task1_student"], s, v) for s, v in enumerate((48.0, 50.0, 52.0))]
    recs += [_seeded(plan["task2"], s, v) for s, v in enumerate((50.0, 53.0, 56.0))]  # +3, spread sqrt(4+9)
    recs += [_seeded(plan["pskd"], s, v) for s, v in enumerate((60.0, 61.0, 62.0))]  # +11
    table = part2.kd_tasks_table(recs).set_index("experiment")
    assert table.loc[plan["task2"].name, "seeds"] == 3 and table.loc[plan["task2"].name, "best top-1"] == 53.0
    assert table.loc[plan["task2"].name, "best top-1 std"] == pytest.approx(3.0)
    assert table.loc[plan["task2"].name, "gain"] == pytest.approx(3.0)
    text = " ".join(part2.findings(recs, n_test=100_000))  # the test set's band is small: seeds decide
    assert "53.00 ± 3.00 (3 seeds) best top-1, +3.00 points over its own baseline" in text
    assert f"inside the ±{math.sqrt(13):.2f}-point noise band" in text
    assert "+11.00 points over its own baseline" in text and "1 of 2 methods" in text


def test_notebook_rejects_alpha_true_before_any_work():
    """Issue 13: ``alpha=True`` was accepted as 1.0."""
    from tests.helpers import run_resolve_cell

    with pytest.raises(ValueError, match=r"alpha = True \(bool\): a bool is not a number"):
        run_resolve_cell("part2_cifar100_kd.ipynb", alpha=True)


# ----------------------------------------------------------------------------- further methods


def test_plan_holds_one_row_per_further_method_with_its_teacher():
    plan = _plan()
    t1 = plan["task1_teacher"]
    for key in ("kd_ls", "dkd", "fitnets", "at", "rkd"):
        assert plan[key].teacher is t1 and plan[key].arch == STUDENT, key
    assert plan["dml"].teacher is None and "peer" in plan["dml"].teacher_label
    # TAKD: teacher -> assistant (between the pair in depth) -> student, for the pair ASSISTANTS knows
    assert "takd" not in plan and "assistant" not in plan  # no assistant known for this test's pair
    chain = part2.part2_plan("wrn_40_2", "wrn_16_2", 0.9, 4.0, WIDTH)
    assert chain["assistant"].teacher is chain["task1_teacher"] and chain["assistant"].arch == "wrn_28_2"
    assert chain["takd"].teacher is chain["assistant"] and chain["takd"].arch == "wrn_16_2"
    assert chain["takd"].lineage == "wrn_40_2x0.25-to-wrn_28_2x0.25-to-wrn_16_2x0.25"
    names = [e.name for e in chain.values()]
    assert len(set(names)) == len(names)
    assert part2.part2_plan("resnet18", STUDENT, 0.9, 4.0, assistant="wrn_40_2")["assistant"].arch == "wrn_40_2"
    assert plan["dkd"].run("smoke").params["method_settings"]["beta"] == part2.METHOD_SETTINGS["dkd"]["beta"]
    assert "method_settings" not in plan["task2"].run("smoke").params  # the old runs' params are unchanged


def test_objectives_of_the_further_methods_and_their_extra_networks(tiny_setup):
    from kdutils.distill import methods

    recipe = dict(tiny_setup[0], epochs=24)
    plan = _plan()
    torch.manual_seed(0)
    student, teacher = part2.build_network(plan["fitnets"], 10), part2.build_network(plan["task1_teacher"], 10)

    def objective(key):
        return part2.make_objective(plan[key], recipe, 64, 10, teacher if plan[key].teacher else None, student)

    kd_ls = objective("kd_ls")
    assert isinstance(kd_ls, objectives.KDLoss) and kd_ls.standardize and kd_ls.tau == 2.0
    dkd = objective("dkd")
    assert isinstance(dkd, methods.DKDLoss) and (dkd.alpha, dkd.beta, dkd.warmup_epochs) == (1.0, 8.0, 2)
    hint = objective("fitnets")
    # stage 2 of ResNet-20 (32 channels) and of WRN-16-2 (64), both narrowed
    conv, bn = hint.regressor  # the benchmark's regressor: 1x1 conv + batch norm
    assert (conv.in_channels, conv.out_channels) == (32 * WIDTH, 64 * WIDTH)
    assert hint.extra_parameter_count() == conv.weight.numel() + 2 * bn.num_features
    assert isinstance(objective("at"), methods.AttentionTransferLoss) and len(objective("at").pairs) == 3
    assert objective("rkd").feature_layers == ("pool",) and objective("rkd").extra_parameter_count() == 0
    dml = objective("dml")
    assert dml.extra_parameter_count() == count_params(student)  # the peer: counted apart from the student
    assert any(not torch.equal(a, b) for a, b in zip(dml.peer.parameters(), student.parameters()))
    with pytest.raises(ValueError, match="FEATURE_LAYERS"):
        part2.make_objective(plan["fitnets"], recipe, 64, 10, nn.Sequential(nn.Flatten()), student)


def test_a_further_method_trains_and_records_its_extra_parameters(tiny_setup):
    recipe, (tr, te) = tiny_setup
    plan = _plan()
    part2.train_experiment(plan["task1_teacher"], "smoke", recipe, tr, te, 10)
    rec = part2.train_experiment(plan["fitnets"], "smoke", recipe, tr, te, 10)
    assert rec["status"] == "complete" and rec["n_extra_params"] > 0 and "train_hint" in rec["history"][0]
    dml = part2.train_experiment(plan["dml"], "smoke", recipe, tr, te, 10)
    assert dml["n_extra_params"] == dml["n_params"]  # the peer has the student's architecture
    table = part2.kd_tasks_table([rec, dml])
    assert list(table["extra params"]) == [rec["n_extra_params"], dml["n_params"]]


# ----------------------------------------------------------------------------- the quick profile's two recipes
def test_quick_teacher_trains_on_more_images_and_epochs_of_the_same_classes(tmp_path, monkeypatch):
    from kdutils.core import data, datasets

    monkeypatch.setattr(datasets, "verified", lambda folder: True)  # as if fetched from a mirror: own md5 list
    root = data.make_cifar_pickles(tmp_path / "c100", "cifar100", n_train=100 * 40, n_test=100 * 20)
    setup = part2.resolve_setup("quick", str(tmp_path / "c100"))
    recipe = part2.recipe_for(setup)
    teacher = part2.recipe_of("task1_teacher", setup, recipe)
    assert (recipe["epochs"], teacher["epochs"]) == (setup["epochs"], setup["teacher_epochs"])
    assert teacher["train_per_class"] == setup["teacher_train_per_class"] > recipe["train_per_class"]
    assert {k for k in recipe if recipe[k] != teacher[k]} == {"epochs", "train_per_class"}
    assert part2.recipe_of("task2", setup, recipe) == recipe  # students keep theirs
    # the notebook's epochs parameter sets every run's epochs, the teacher's too
    assert part2.recipe_of("task1_teacher", setup, part2.recipe_for(setup, 3), 3)["epochs"] == 3
    assert root.exists()
    student_loader, test_loader, k = part2.cifar_loaders(setup, dict(recipe, train_per_class=10, test_per_class=5))
    teacher_loader, _, k2 = part2.cifar_loaders(setup, dict(teacher, train_per_class=30, test_per_class=5))
    assert k == k2 == setup["classes"] == 20
    assert (student_loader.num_samples, teacher_loader.num_samples, test_loader.num_samples) == (200, 600, 100)


def test_full_profile_trains_every_run_with_the_same_recipe_on_all_classes():
    setup = part2.resolve_setup("full", "/nonexistent")
    recipe = part2.recipe_for(setup)
    assert recipe == CIFAR100_RECIPE["full"]
    assert part2.recipe_of("task1_teacher", setup, recipe) == recipe
    assert setup["classes"] is None
