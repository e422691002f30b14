"""A training recipe: how a model is optimised, as one frozen dataclass.

``Recipe`` holds the optimiser, the learning-rate schedule, the number of epochs and
gradient clipping: everything that decides *what* a run computes (where and in which
precision it runs is :class:`~kdutils.core.train.Runtime`). Recipes are data:

- ``dataclasses.replace(recipe, epochs=10)`` derives a variant;
- ``recipe.as_dict()`` goes into every run record (``record["recipe"]``) and into the
  set-up tables the notebooks show;
- :meth:`Recipe.optimizer_for` and :meth:`Recipe.scheduler_for` build the torch objects
  that ``fit`` steps.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "linear", "multistep", "constant")


@dataclass(frozen=True)
class Recipe:
    """How to optimise: ``epochs`` and the optimiser/schedule settings ``fit`` uses.

    ``optimizer``: ``sgd`` (``momentum``, ``nesterov``), ``adam`` or ``adamw`` (``betas``),
    all with ``weight_decay``. ``schedule`` (per step): ``cosine`` (linear warm-up over
    ``warmup_epochs``, then cosine decay to ``final_lr_scale`` of ``lr``), ``linear``,
    ``multistep`` (times ``gamma`` at each epoch in ``milestones``) or ``constant``.
    ``grad_clip``: clip the gradient norm (None: off). ``eval_every``: test every k epochs
    (and always after the last one).
    """

    epochs: int
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    betas: tuple = (0.9, 0.999)
    schedule: str = "cosine"
    warmup_epochs: float = 0
    milestones: tuple = ()
    gamma: float = 0.1
    final_lr_scale: float = 0.0
    grad_clip: Optional[float] = None
    eval_every: int = 1

    def __post_init__(self):
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 1:
            raise ValueError(f"Recipe.epochs must be a positive int, got {self.epochs!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"Recipe.lr must be > 0, got {self.lr!r}")
        if str(self.optimizer).lower() not in OPTIMIZERS:
            raise ValueError(f"Recipe.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Recipe.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"Recipe.grad_clip must be > 0 or None, got {self.grad_clip!r}")
        if not (isinstance(self.eval_every, int) and self.eval_every >= 1):
            raise ValueError(f"Recipe.eval_every must be an int >= 1, got {self.eval_every!r}")
        # Lists from JSON or notebooks become tuples, so recipes compare and hash by value.
        object.__setattr__(self, "betas", tuple(self.betas))
        object.__setattr__(self, "milestones", tuple(self.milestones))

    @classmethod
    def from_dict(cls, settings, **overrides) -> "Recipe":
        """A recipe from a settings dict that may hold other keys too (data, model,
        augmentation): only the recipe's own fields are taken; ``overrides`` win."""
        names = {f.name for f in dataclasses.fields(cls)}
        chosen = {k: v for k, v in dict(settings).items() if k in names}
        chosen.update(overrides)
        return cls(**chosen)

    def as_dict(self) -> dict:
        """Plain JSON-able values (tuples as lists), for records and tables."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def optimizer_for(self, params) -> torch.optim.Optimizer:
        return make_optimizer(params, self.optimizer, self.lr, self.momentum, self.weight_decay, self.nesterov,
                              self.betas)

    def scheduler_for(self, optimizer, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
        """A per-step ``LambdaLR`` over ``epochs * steps_per_epoch`` steps."""
        total = self.epochs * steps_per_epoch
        warmup = int(round(self.warmup_epochs * steps_per_epoch))
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, total, steps_per_epoch, self.schedule, warmup,
                                           self.milestones, self.gamma, self.final_lr_scale))


def make_optimizer(params, name: str = "sgd", lr: float = 0.1, momentum: float = 0.9,
                   weight_decay: float = 5e-4, nesterov: bool = True, betas=(0.9, 0.999)):
    """SGD (momentum, Nesterov), Adam or AdamW from plain parameters.

    ``params`` is an iterable of tensors or of param-group dicts; a group's ``lr_scale``
    multiplies ``lr`` (used for fine-tuning chosen layers at a percentage of the base rate).
    """
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be > 0, got {lr!r}")
    groups = list(params)
    if groups and isinstance(groups[0], dict):
        # Copies: the caller's groups keep their ``lr_scale`` (fit can be called again with them).
        groups = [{**{k: v for k, v in g.items() if k != "lr_scale"}, "lr": lr * g.get("lr_scale", 1.0)}
                  for g in groups]
    name = name.lower()
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=nesterov and momentum > 0)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd', 'adam' or 'adamw', got {name!r}")


def lr_factor(step: int, total: int, steps_per_epoch: int, schedule: str = "cosine",
              warmup_steps: int = 0, milestones=(), gamma: float = 0.1, final_scale: float = 0.0) -> float:
    """The multiplier of the base learning rate at ``step`` (0-based) of ``total`` steps.

    ``cosine``: linear warm-up, then cosine decay to ``final_scale``; ``constant``;
    ``multistep``: times ``gamma`` at each epoch in ``milestones``; ``linear``: linear decay.
    """
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "multistep":
        epoch = step // max(steps_per_epoch, 1)
        return gamma ** sum(1 for m in milestones if epoch >= m)
    progress = (step - warmup_steps) / max(total - warmup_steps, 1)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return final_scale + (1 - final_scale) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "linear":
        return final_scale + (1 - final_scale) * (1 - progress)
    raise ValueError(f"schedule must be 'cosine', 'linear', 'multistep' or 'constant', got {schedule!r}")
