"""The shape of every training objective, and the plain one.

``fit`` calls an objective once per step as ``loss, parts = objective(outputs, batch)``:

- ``outputs`` is what the model returned (logits, or a tuple whose first item is the
  logits trained against the labels, see :func:`~kdutils.core.outputs.primary_logits`);
- ``batch`` is a :class:`Batch`: the inputs ``x``, labels ``y``, the loader's sample
  ``index``, the ``epoch``, and ``features``: the outputs of the student's modules named
  in the objective's ``feature_layers`` (captured by forward hooks);
- ``parts`` maps names to detached scalars that ``fit`` averages per epoch into the
  history (``train_<name>``).

An objective that learns from a teacher holds a *teacher source* in ``self.teacher``
(:mod:`kdutils.distill.teachers`: a live model, cached logits, recorded responses, a
manual target, the student's own past predictions); ``fit`` calls :meth:`Objective.prepare`
once, which moves the objective and its source to the device and tells the source the
run's precision. Objectives are ``nn.Module`` s: their buffers (a PS-KD memory, LwF's
recorded responses) and any trainable parameters (a feature regressor) are saved in each
checkpoint and, for parameters, optimised with the model.

The distillation objectives live in :mod:`kdutils.distill.objectives`; this module holds
only the base class and plain cross-entropy, which the training loop uses by default.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from kdutils.core.outputs import primary_logits


@dataclass
class Batch:
    """One training step's data as an objective sees it."""

    x: torch.Tensor
    y: torch.Tensor
    index: Optional[torch.Tensor] = None
    epoch: int = 0
    features: dict = field(default_factory=dict)


class FeatureTaps:
    """Forward hooks that keep the latest outputs of a model's named modules in
    :attr:`features` (the student's for ``batch.features``, a live teacher's for its own)."""

    def __init__(self, model: nn.Module, names: Iterable[str]):
        self.features: dict = {}
        self.handles = [model.get_submodule(n).register_forward_hook(self._keeper(n)) for n in names]

    def _keeper(self, name):
        def keep(_module, _inputs, output):
            self.features[name] = output
        return keep

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def check_unit(name: str, v: float) -> float:
    """``v`` as a float in [0, 1], or a ``ValueError`` naming ``name``."""
    if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
        raise ValueError(f"{name} must lie in [0, 1], got {v!r}")
    return float(v)


def check_positive(name: str, v: float) -> float:
    """``v`` as a finite float > 0 (a temperature), or a ``ValueError`` naming ``name``."""
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    return float(v)


class Objective(nn.Module):
    """Base class: ``forward(outputs, batch) -> (loss, parts)``.

    ``teacher``: a teacher source or None. ``feature_layers``: names of the student's
    modules (``model.get_submodule`` names) whose outputs ``fit`` captures into
    ``batch.features`` for this objective.
    """

    feature_layers: tuple = ()
    #: True for objectives that cannot work without a teacher source (checked by ``prepare``).
    needs_teacher = False
    #: Hyper-parameters shown by ``repr`` (and so in every record's ``objective``).
    shown = ("alpha", "tau", "lam", "label_smoothing", "a", "alpha_T", "lambda0", "beta")

    def __init__(self, teacher=None):
        super().__init__()
        self.teacher = teacher

    def prepare(self, device: torch.device, dtype: Optional[torch.dtype], channels_last: bool) -> "Objective":
        """Move to ``device``; hand the run's autocast dtype and memory layout to the source."""
        if self.needs_teacher and self.teacher is None:
            raise ValueError(f"{type(self).__name__} needs a teacher source, e.g. "
                             f"{type(self).__name__}(..., teacher=LiveTeacher(model)) (kdutils.distill.teachers)")
        self.to(device)
        if self.teacher is not None and hasattr(self.teacher, "prepare"):
            self.teacher.prepare(device, dtype, channels_last)
        return self

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={getattr(self, k)}" for k in self.shown if k in self.__dict__)

    def extra_modules(self) -> dict:
        """The networks this objective trains besides the model (a FitNets regressor, the
        second student of deep mutual learning): its child modules with trainable
        parameters, by name. The teacher source never counts (a live teacher's weights are
        not a submodule). ``fit`` optimises them with the model and saves them in the
        checkpoint; they are not part of the deployed model (nor of its parameter budget)."""
        return {name: m for name, m in self.named_children()
                if name != "teacher" and any(p.requires_grad for p in m.parameters())}

    def extra_parameter_count(self) -> int:
        """Parameters of :meth:`extra_modules` (shared tensors counted once), for tables."""
        seen = {id(p): p.numel() for m in self.extra_modules().values() for p in m.parameters()}
        return sum(seen.values())

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Also loads checkpoints written before the memory/recorded buffers moved into the
        teacher source (keys ``memory`` -> ``teacher.memory``)."""
        own = set(self.state_dict())
        renamed = {(f"teacher.{k}" if k not in own and f"teacher.{k}" in own else k): v
                   for k, v in state_dict.items()}
        return super().load_state_dict(renamed, strict=strict, assign=assign)


class CrossEntropy(Objective):
    """Plain cross-entropy with optional label smoothing (every baseline)."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = check_unit("label_smoothing", label_smoothing)

    def forward(self, outputs, batch: Batch):
        loss = F.cross_entropy(primary_logits(outputs).float(), batch.y, label_smoothing=self.label_smoothing)
        return loss, {"ce": loss.detach()}
