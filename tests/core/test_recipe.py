import dataclasses

import pytest
import torch
from torch import nn

from kdutils.core.recipe import Recipe, lr_factor, make_optimizer


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 10))


def test_param_groups_scale_learning_rates():
    net = _net()
    opt = make_optimizer([{"params": net[0].parameters(), "lr_scale": 0.1},
                                {"params": net[-1].parameters()}], "sgd", lr=0.2)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.02, 0.2])


def test_lr_schedules():
    f = lr_factor
    assert f(0, 100, 10, "cosine") == pytest.approx(1.0)
    assert f(50, 100, 10, "cosine") == pytest.approx(0.5)
    assert f(0, 100, 10, "cosine", warmup_steps=10) == pytest.approx(0.1)
    assert f(35, 100, 10, "multistep", milestones=(3, 6)) == pytest.approx(0.1)
    assert f(65, 100, 10, "multistep", milestones=(3, 6)) == pytest.approx(0.01)
    with pytest.raises(ValueError):
        f(0, 10, 1, "bogus")


def test_recipe_validates_its_fields():
    with pytest.raises(ValueError, match="epochs"):
        Recipe(0)
    with pytest.raises(ValueError, match="epochs"):
        Recipe(2.5)
    with pytest.raises(ValueError, match="optimizer"):
        Recipe(1, optimizer="rmsprop")
    with pytest.raises(ValueError, match="schedule"):
        Recipe(1, schedule="bogus")
    with pytest.raises(ValueError, match="lr"):
        Recipe(1, lr=0)
    with pytest.raises(ValueError, match="grad_clip"):
        Recipe(1, grad_clip=-1.0)


def test_recipe_from_dict_replace_and_as_dict():
    settings = dict(epochs=3, lr=0.2, batch_size=64, padding=4, milestones=[2])
    r = Recipe.from_dict(settings, lr=0.1)  # other keys (data, augmentation) are ignored
    assert (r.epochs, r.lr, r.milestones) == (3, 0.1, (2,))
    assert dataclasses.replace(r, epochs=5).epochs == 5 and r.epochs == 3
    d = r.as_dict()
    assert d["milestones"] == [2] and d["betas"] == [0.9, 0.999] and "batch_size" not in d
    assert Recipe(**{**d, "milestones": tuple(d["milestones"])}) == r


def test_recipe_builds_the_optimiser_and_per_step_schedule():
    net = _net()
    r = Recipe(2, optimizer="adamw", lr=0.01, weight_decay=0.05, schedule="multistep", milestones=(1,), gamma=0.5)
    opt = r.optimizer_for(net.parameters())
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 0.05
    sched = r.scheduler_for(opt, steps_per_epoch=3)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.01] * 3 + [0.005] * 3)
