"""Training objectives: plain CE, knowledge distillation and its relatives.

Every objective is a small ``nn.Module`` called by ``kdutils.core.train.fit`` as::

    loss, parts = objective(outputs, targets, teacher_logits=..., index=..., epoch=...)

``outputs`` is what the model returned (a tensor of logits, or a tuple whose first item
is the logits being trained); ``parts`` maps names to detached scalar tensors that ``fit``
averages per epoch (no host sync per step). ``needs_teacher`` tells ``fit`` to run the
teacher (in ``eval()`` under ``torch.no_grad()``) and pass its logits.

Conventions (see CONVENTIONS.md):

- soft terms compare ``log_softmax(student / tau)`` with ``softmax(teacher / tau)``, are
  summed over classes, averaged over the batch and multiplied by ``tau**2`` so their
  gradient scale does not shrink as ``tau`` grows (Hinton et al., 2015);
- ``H(p_T, p_S)`` (cross-entropy) and ``KL(p_T || p_S)`` differ by the teacher's entropy,
  a constant with respect to the student, so both give the same gradients
  (``soft_cross_entropy`` vs ``soft_kl``; the tests show it);
- evaluation always uses tau = 1.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "primary_logits",
    "soft_cross_entropy",
    "soft_kl",
    "CrossEntropy",
    "KDLoss",
    "HintonKDLoss",
    "TfKDRegLoss",
    "manual_soft_target",
    "PSKDLoss",
    "pskd_alpha",
    "LwFLoss",
    "lwf_distillation",
]


def primary_logits(outputs):
    """The logits being trained/evaluated: the tensor itself or the first item of a tuple."""
    if isinstance(outputs, (tuple, list)):
        return outputs[0]
    if isinstance(outputs, dict):
        return outputs["logits"]
    return outputs


def _check_tau(tau: float) -> float:
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"temperature tau must be a finite number > 0, got {tau!r}")
    return float(tau)


def _check_unit(name: str, v: float) -> float:
    if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
        raise ValueError(f"{name} must lie in [0, 1], got {v!r}")
    return float(v)


def soft_cross_entropy(student_logits, target_probs, tau: float = 1.0) -> torch.Tensor:
    """H(q, p_S(tau)) = -sum_k q_k log softmax(z_S / tau)_k, averaged over the batch."""
    logp = F.log_softmax(student_logits.float() / tau, dim=1)
    return -(target_probs.float() * logp).sum(dim=1).mean()


def soft_kl(student_logits, target_probs, tau: float = 1.0) -> torch.Tensor:
    """KL(q || p_S(tau)), summed over classes and averaged over the batch ("batchmean")."""
    logp = F.log_softmax(student_logits.float() / tau, dim=1)
    return F.kl_div(logp, target_probs.float(), reduction="batchmean")


class Objective(nn.Module):
    """Base class: subclasses implement ``forward`` and may set ``needs_teacher``."""

    needs_teacher = False

    def extra_repr(self) -> str:  # shows the hyper-parameters in notebooks
        keys = [k for k in ("alpha", "tau", "lam", "label_smoothing", "a", "alpha_T", "lambda0") if hasattr(self, k)]
        return ", ".join(f"{k}={getattr(self, k)}" for k in keys)


class CrossEntropy(Objective):
    """Plain cross-entropy with optional label smoothing (the students' own baselines)."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = _check_unit("label_smoothing", label_smoothing)

    def forward(self, outputs, targets, **_):
        loss = F.cross_entropy(primary_logits(outputs).float(), targets, label_smoothing=self.label_smoothing)
        return loss, {"ce": loss.detach()}


class KDLoss(Objective):
    """The assignment's KD loss (parts 2 and 3):

        L = (1 - alpha) * H(y, P_S) + alpha * tau^2 * H(P_T(tau), P_S(tau))

    ``alpha`` in [0, 1] weights the soft term; ``alpha=0`` is plain training and
    ``alpha=1`` uses the soft targets alone. Part 3 calls the same weight ``lambda``.
    ``form="kl"`` replaces the soft cross-entropy by the KL divergence: same gradients,
    the value lower by the teacher's entropy (zero when student equals teacher).
    """

    needs_teacher = True

    def __init__(self, alpha: float = 0.9, tau: float = 4.0, form: str = "ce"):
        super().__init__()
        self.alpha = _check_unit("alpha", alpha)
        self.tau = _check_tau(tau)
        if form not in ("ce", "kl"):
            raise ValueError(f"form must be 'ce' or 'kl', got {form!r}")
        self.form = form

    def soft_term(self, student_logits, teacher_logits):
        q = F.softmax(teacher_logits.float() / self.tau, dim=1)
        fn = soft_cross_entropy if self.form == "ce" else soft_kl
        return self.tau**2 * fn(student_logits, q, self.tau)

    def forward(self, outputs, targets, teacher_logits=None, **_):
        if teacher_logits is None:
            raise ValueError("KDLoss needs teacher logits: pass teacher=... to fit()")
        z = primary_logits(outputs)
        ce = F.cross_entropy(z.float(), targets)
        soft = self.soft_term(z, teacher_logits)
        loss = (1 - self.alpha) * ce + self.alpha * soft
        return loss, {"ce": ce.detach(), "kd": soft.detach()}


class HintonKDLoss(Objective):
    """Hinton's form used by part 3's hyper-parameter search:

        L = CE(z_S, y) + lam * T^2 * KL(q_T || q_S),  q = softmax(z / T)

    ``lam`` is unbounded (>= 0). The KL is teacher-to-student (the usual direction; the
    assignment writes it with the arguments swapped, meaning the same term).
    """

    needs_teacher = True

    def __init__(self, lam: float = 1.0, tau: float = 4.0):
        super().__init__()
        if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
            raise ValueError(f"lambda must be a finite number >= 0, got {lam!r}")
        self.lam = float(lam)
        self.tau = _check_tau(tau)

    def forward(self, outputs, targets, teacher_logits=None, **_):
        if teacher_logits is None:
            raise ValueError("HintonKDLoss needs teacher logits: pass teacher=... to fit()")
        z = primary_logits(outputs)
        ce = F.cross_entropy(z.float(), targets)
        kl = self.tau**2 * soft_kl(z, F.softmax(teacher_logits.float() / self.tau, dim=1), self.tau)
        return ce + self.lam * kl, {"ce": ce.detach(), "kd": kl.detach()}


def manual_soft_target(targets: torch.Tensor, num_classes: int, a: float = 0.9) -> torch.Tensor:
    """Tf-KD's manually designed teacher: the correct class gets ``a``, the other
    ``num_classes - 1`` classes share ``1 - a`` equally."""
    _check_unit("a", a)
    if num_classes < 2:
        raise ValueError("manual_soft_target needs at least 2 classes")
    out = torch.full((targets.shape[0], num_classes), (1 - a) / (num_classes - 1), device=targets.device)
    out.scatter_(1, targets.view(-1, 1), a)
    return out


class TfKDRegLoss(Objective):
    """Teacher-free KD, the "reg" variant (Yuan et al., CVPR 2020): a virtual teacher
    whose output is ``manual_soft_target`` (correct class ``a``), softened at ``tau``:

        L = (1 - alpha) * CE(z_S, y) + alpha * tau^2 * KL(softmax(p_d / tau) || softmax(z_S / tau))

    (The paper's code softens only the virtual teacher and multiplies by a large constant;
    here both sides are softened as in the paper's equation, scaled by ``tau**2`` like KD.)
    Tf-KD "self" needs no class of its own: it is ``KDLoss`` with a pre-trained copy of the
    student as teacher.
    """

    def __init__(self, alpha: float = 0.5, tau: float = 20.0, a: float = 0.9):
        super().__init__()
        self.alpha = _check_unit("alpha", alpha)
        self.tau = _check_tau(tau)
        self.a = _check_unit("a", a)

    def forward(self, outputs, targets, **_):
        z = primary_logits(outputs)
        pd = manual_soft_target(targets, z.shape[1], self.a)
        q = F.softmax(pd / self.tau, dim=1)
        ce = F.cross_entropy(z.float(), targets)
        reg = self.tau**2 * soft_kl(z, q, self.tau)
        return (1 - self.alpha) * ce + self.alpha * reg, {"ce": ce.detach(), "reg": reg.detach()}


def pskd_alpha(epoch: int, epochs: int, alpha_T: float) -> float:
    """PS-KD's weight at (0-based) ``epoch``: grows linearly from 0 to ``alpha_T`` at the
    last epoch, alpha_t = alpha_T * t / (epochs - 1)."""
    if epochs <= 1:
        return float(alpha_T)
    return float(alpha_T) * min(max(epoch, 0), epochs - 1) / (epochs - 1)


class PSKDLoss(Objective):
    """Progressive self-knowledge distillation (Kim et al., ICCV 2021).

    The target of sample i at epoch t is ``(1 - alpha_t) * onehot(y_i) + alpha_t * p_{t-1}(x_i)``
    where ``p_{t-1}`` is the model's own prediction for that sample in the previous epoch,
    kept in a per-sample memory (a buffer, so it is saved in checkpoints and resume works).
    The loss is the soft cross-entropy against that target. Needs the sample ``index``
    (``kdutils.core.loader`` yields it).
    """

    def __init__(self, num_samples: int, num_classes: int, alpha_T: float = 0.8, epochs: int = 1):
        super().__init__()
        self.alpha_T = _check_unit("alpha_T", alpha_T)
        self.epochs = int(epochs)
        self.register_buffer("memory", torch.zeros(num_samples, num_classes))
        self.register_buffer("filled", torch.zeros(num_samples, dtype=torch.bool))

    def targets_for(self, targets, index, epoch):
        k = self.memory.shape[1]
        onehot = F.one_hot(targets, k).float()
        a = pskd_alpha(epoch, self.epochs, self.alpha_T)
        prev = self.memory[index]
        # A sample without a stored prediction (first epoch) keeps its one-hot label.
        prev = torch.where(self.filled[index].unsqueeze(1), prev, onehot)
        return (1 - a) * onehot + a * prev

    def forward(self, outputs, targets, index=None, epoch=0, **_):
        if index is None:
            raise ValueError("PSKDLoss needs the sample index of every batch (kdutils.core.loader yields it)")
        z = primary_logits(outputs)
        soft = self.targets_for(targets, index, epoch)
        loss = soft_cross_entropy(z, soft)
        with torch.no_grad():
            self.memory[index] = F.softmax(z.detach().float(), dim=1)
            self.filled[index] = True
        return loss, {"ce_soft": loss.detach()}


def lwf_distillation(old_logits, recorded_logits, T: float = 2.0, form: str = "ce") -> torch.Tensor:
    """Learning-without-Forgetting distillation of the old head against its recorded
    responses, both softened at ``T``. ``form="ce"`` is the paper's modified cross-entropy
    (minimum = the recorded distribution's entropy), ``"kl"`` the same minus that constant
    (zero at the minimum). Gradients are equal and vanish when the outputs match."""
    T = _check_tau(T)
    q = F.softmax(recorded_logits.float() / T, dim=1)
    if form == "ce":
        return soft_cross_entropy(old_logits, q, T)
    if form == "kl":
        return soft_kl(old_logits, q, T)
    raise ValueError(f"form must be 'ce' or 'kl', got {form!r}")


class LwFLoss(Objective):
    """Li & Hoiem's joint objective for a two-head network whose forward returns
    ``(new_logits, old_logits)``:

        L = CE(new_logits, y) + lambda0 * lwf_distillation(old_logits, recorded[index], T)

    ``recorded`` holds the old head's logits for every new-task training image, taken
    before any update (``kdutils.parts.part4.record_responses``). L2 weight decay is the
    optimizer's ``weight_decay``.
    """

    def __init__(self, recorded: torch.Tensor, lambda0: float = 1.0, T: float = 2.0, form: str = "ce"):
        super().__init__()
        if lambda0 < 0:
            raise ValueError(f"lambda0 must be >= 0, got {lambda0!r}")
        self.lambda0 = float(lambda0)
        self.tau = _check_tau(T)
        self.form = form
        self.register_buffer("recorded", recorded.detach().float().clone())

    def forward(self, outputs, targets, index=None, **_):
        if not isinstance(outputs, (tuple, list)) or len(outputs) != 2:
            raise ValueError("LwFLoss expects the model to return (new_logits, old_logits)")
        if index is None:
            raise ValueError("LwFLoss needs the sample index of every batch (kdutils.core.loader yields it)")
        new, old = outputs
        ce = F.cross_entropy(new.float(), targets)
        dist = lwf_distillation(old, self.recorded[index], self.tau, self.form)
        return ce + self.lambda0 * dist, {"ce": ce.detach(), "lwf": dist.detach()}
