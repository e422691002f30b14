"""Distillation objectives: KD and its relatives, each a small ``nn.Module``.

Every objective has the shape of :class:`kdutils.core.objective.Objective`:
``loss, parts = objective(outputs, batch)``, with its soft targets coming from the
teacher source it holds (:mod:`kdutils.distill.teachers`). One family, five sources:

===================  ===========================  ===================================
objective            teacher source               used in
===================  ===========================  ===================================
``KDLoss``           ``LiveTeacher`` /            parts 2, 3 (the lambda mix), 5
                     ``CachedLogits``
``HintonKDLoss``     ``CachedLogits``             part 3's search (CE + lam T^2 KL)
``TfKDRegLoss``      ``ManualTarget``             part 2 (Teacher-free KD, "reg")
``PSKDLoss``         ``OwnPredictions``           part 2 (progressive self-KD)
``LwFLoss``          ``RecordedLogits``           part 4 (Learning without Forgetting)
``HintLoss``         ``LiveTeacher`` (features)   feature-based KD (FitNets), part 2
===================  ===========================  ===================================

More methods (attention transfer, relational KD, decoupled KD, deep mutual learning,
teacher-assistant KD) live in :mod:`kdutils.distill.methods`; logit standardization
(:func:`standardize_logits`) is the ``standardize`` option of every logit objective.

Conventions:

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
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from kdutils.core.objective import Batch, CrossEntropy, Objective, check_positive, check_unit
from kdutils.core.outputs import primary_logits
from kdutils.distill.teachers import (
    LiveTeacher,
    ManualTarget,
    OwnPredictions,
    RecordedLogits,
    TeacherSource,
    manual_soft_target,
)

__all__ = [
    "primary_logits", "soft_cross_entropy", "soft_kl", "Objective", "CrossEntropy", "KDLoss", "HintonKDLoss",
    "TfKDRegLoss", "manual_soft_target", "PSKDLoss", "pskd_alpha", "LwFLoss", "lwf_distillation", "HintLoss",
    "standardize_logits", "LOGIT_STANDARDIZATION",
]

#: Logit standardization (Sun, Ren, Li, Wang & Cao, "Logit Standardization in Knowledge
#: Distillation", CVPR 2024, https://arxiv.org/abs/2403.01427): the option
#: ``standardize=True`` of every logit objective here and in :mod:`kdutils.distill.methods`.
LOGIT_STANDARDIZATION = "Sun et al., CVPR 2024 (arXiv:2403.01427)"


def _check_tau(tau: float) -> float:
    return check_positive("temperature tau", tau)


def standardize_logits(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Z-score of every row: ``(z - mean(z)) / (std(z) + eps)`` over the classes, with the
    unbiased standard deviation (as the authors' code does).

    Logit standardization (Sun et al., "Logit Standardization in Knowledge Distillation",
    CVPR 2024, https://arxiv.org/abs/2403.01427) applies it to the student's *and* the
    teacher's logits before the softened softmax, so the student matches the teacher's
    logit *relations* rather than their range: a shared temperature otherwise forces the
    smaller student to copy the teacher's logit scale. The authors report WRN-40-2 ->
    WRN-16-2 on CIFAR-100 at 74.92% with KD and 76.11% with KD + standardization (their
    README, base temperature 2 and KD weight 9), the very pair part 2 uses. The
    cross-entropy on the labels keeps the raw logits.
    """
    z = logits.float()
    return (z - z.mean(dim=1, keepdim=True)) / (z.std(dim=1, keepdim=True) + eps)


def _maybe_standardized(logits: torch.Tensor, standardize: bool) -> torch.Tensor:
    return standardize_logits(logits) if standardize else logits


def _standardize_repr(objective: Objective) -> str:
    """The objective's ``repr`` arguments, with ``standardize=True`` added when it is on
    (left out when off, so records of runs without it keep their old text)."""
    text = Objective.extra_repr(objective)
    return text + ", standardize=True" if getattr(objective, "standardize", False) else text


def soft_cross_entropy(student_logits, target_probs, tau: float = 1.0) -> torch.Tensor:
    """H(q, p_S(tau)) = -sum_k q_k log softmax(z_S / tau)_k, averaged over the batch."""
    logp = F.log_softmax(student_logits.float() / tau, dim=1)
    return -(target_probs.float() * logp).sum(dim=1).mean()


def soft_kl(student_logits, target_probs, tau: float = 1.0) -> torch.Tensor:
    """KL(q || p_S(tau)), summed over classes and averaged over the batch ("batchmean")."""
    logp = F.log_softmax(student_logits.float() / tau, dim=1)
    return F.kl_div(logp, target_probs.float(), reduction="batchmean")


class KDLoss(Objective):
    """The assignment's KD loss (parts 2 and 3):

        L = (1 - alpha) * H(y, P_S) + alpha * tau^2 * H(P_T(tau), P_S(tau))

    ``alpha`` in [0, 1] weights the soft term; ``alpha=0`` is plain training and
    ``alpha=1`` uses the soft targets alone. Part 3 calls the same weight ``lambda``.
    ``form="kl"`` replaces the soft cross-entropy by the KL divergence: same gradients,
    the value lower by the teacher's entropy (zero when student equals teacher).
    ``teacher``: a source of teacher logits, e.g. ``LiveTeacher(model)``.
    ``standardize=True``: logit standardization (:func:`standardize_logits`) of both
    logits in the soft term (Hinton et al., "Distilling the Knowledge in a Neural
    Network", 2015, https://arxiv.org/abs/1503.02531).
    """

    needs_teacher = True
    #: The history name of the soft term (``train_kd``).
    soft_name = "kd"

    def __init__(self, alpha: float = 0.9, tau: float = 4.0, form: str = "ce", teacher: Optional[TeacherSource] = None,
                 standardize: bool = False):
        super().__init__(teacher)
        self.alpha = check_unit("alpha", alpha)
        self.tau = _check_tau(tau)
        if form not in ("ce", "kl"):
            raise ValueError(f"form must be 'ce' or 'kl', got {form!r}")
        self.form = form
        self.standardize = bool(standardize)

    def extra_repr(self) -> str:
        return _standardize_repr(self)

    def soft_term(self, student_logits, teacher_logits):
        student_logits = _maybe_standardized(student_logits, self.standardize)
        q = F.softmax(_maybe_standardized(teacher_logits, self.standardize).float() / self.tau, dim=1)
        fn = soft_cross_entropy if self.form == "ce" else soft_kl
        return self.tau**2 * fn(student_logits, q, self.tau)

    def forward(self, outputs, batch: Batch):
        z = primary_logits(outputs)
        ce = F.cross_entropy(z.float(), batch.y)
        soft = self.soft_term(z, self.teacher(batch))
        loss = (1 - self.alpha) * ce + self.alpha * soft
        return loss, {"ce": ce.detach(), self.soft_name: soft.detach()}


class HintonKDLoss(Objective):
    """Hinton's form used by part 3's hyper-parameter search:

        L = CE(z_S, y) + lam * T^2 * KL(q_T || q_S),  q = softmax(z / T)

    ``lam`` is unbounded (>= 0). The KL is teacher-to-student (the usual direction; the
    assignment writes it with the arguments swapped, meaning the same term).
    ``standardize=True``: logit standardization of both logits in the KL
    (:func:`standardize_logits`); with ``lam=9, tau=2`` this is the authors' CIFAR-100
    setting up to the weight of the cross-entropy (theirs 0.1, here 1).
    """

    needs_teacher = True

    def __init__(self, lam: float = 1.0, tau: float = 4.0, teacher: Optional[TeacherSource] = None,
                 standardize: bool = False):
        super().__init__(teacher)
        if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
            raise ValueError(f"lambda must be a finite number >= 0, got {lam!r}")
        self.lam = float(lam)
        self.tau = _check_tau(tau)
        self.standardize = bool(standardize)

    def extra_repr(self) -> str:
        return _standardize_repr(self)

    def forward(self, outputs, batch: Batch):
        z = primary_logits(outputs)
        ce = F.cross_entropy(z.float(), batch.y)
        target = F.softmax(_maybe_standardized(self.teacher(batch), self.standardize).float() / self.tau, dim=1)
        kl = self.tau**2 * soft_kl(_maybe_standardized(z, self.standardize), target, self.tau)
        return ce + self.lam * kl, {"ce": ce.detach(), "kd": kl.detach()}


class TfKDRegLoss(KDLoss):
    """Teacher-free KD, the "reg" variant (Yuan et al., CVPR 2020): :class:`KDLoss` in its
    KL form with a virtual teacher whose output is ``manual_soft_target`` (correct class
    ``a``), softened at ``tau``:

        L = (1 - alpha) * CE(z_S, y) + alpha * tau^2 * KL(softmax(p_d / tau) || softmax(z_S / tau))

    (The paper's code softens only the virtual teacher and multiplies by a large constant;
    here both sides are softened as in the paper's equation, scaled by ``tau**2`` like KD.)
    Tf-KD "self" needs no class of its own: it is ``KDLoss`` with a pre-trained copy of the
    student as teacher.
    """

    soft_name = "reg"

    def __init__(self, num_classes: int, alpha: float = 0.5, tau: float = 20.0, a: float = 0.9):
        super().__init__(alpha, tau, form="kl", teacher=ManualTarget(num_classes, a))
        self.a = self.teacher.a


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
    kept by an :class:`~kdutils.distill.teachers.OwnPredictions` source (buffers, so they
    are saved in checkpoints and resume works). The loss is the soft cross-entropy against
    that target. Needs the sample ``index`` (``kdutils.core.loader`` yields it).
    """

    def __init__(self, num_samples: int, num_classes: int, alpha_T: float = 0.8, epochs: int = 1):
        super().__init__(OwnPredictions(num_samples, num_classes))
        self.alpha_T = check_unit("alpha_T", alpha_T)
        self.epochs = int(epochs)

    def targets_for(self, batch: Batch) -> torch.Tensor:
        onehot = F.one_hot(batch.y, self.teacher.memory.shape[1]).float()
        a = pskd_alpha(batch.epoch, self.epochs, self.alpha_T)
        prev, filled = self.teacher(batch)
        # A sample without a stored prediction (first epoch) keeps its one-hot label.
        prev = torch.where(filled.unsqueeze(1), prev, onehot)
        return (1 - a) * onehot + a * prev

    def forward(self, outputs, batch: Batch):
        z = primary_logits(outputs)
        loss = soft_cross_entropy(z, self.targets_for(batch))
        self.teacher.remember(batch, z)
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
    before any update (``kdutils.parts.part4.record_responses``), served by a
    :class:`~kdutils.distill.teachers.RecordedLogits` source. L2 weight decay is the
    recipe's ``weight_decay``.
    """

    def __init__(self, recorded: torch.Tensor, lambda0: float = 1.0, T: float = 2.0, form: str = "ce"):
        super().__init__(RecordedLogits(recorded))
        if lambda0 < 0:
            raise ValueError(f"lambda0 must be >= 0, got {lambda0!r}")
        self.lambda0 = float(lambda0)
        self.tau = _check_tau(T)
        self.form = form

    def forward(self, outputs, batch: Batch):
        if not isinstance(outputs, (tuple, list)) or len(outputs) != 2:
            raise ValueError("LwFLoss expects the model to return (new_logits, old_logits)")
        new, old = outputs
        ce = F.cross_entropy(new.float(), batch.y)
        dist = lwf_distillation(old, self.teacher(batch), self.tau, self.form)
        return ce + self.lambda0 * dist, {"ce": ce.detach(), "lwf": dist.detach()}


class HintLoss(Objective):
    """Feature-based distillation with a hint: FitNets (Romero, Ballas, Kahou, Chassang,
    Gatta & Bengio, "FitNets: Hints for Thin Deep Nets", ICLR 2015,
    https://arxiv.org/abs/1412.6550), in the one-stage form of the CIFAR-100 benchmarks
    (Tian et al., CRD, ICLR 2020: hint loss added to the cross-entropy throughout training,
    instead of the paper's separate hint pre-training stage):

        L = CE(z_S, y) + beta * MSE(r(f_S), f_T)

    ``f_S`` is the output of the student's module ``student_layer``, ``f_T`` that of the
    teacher's ``teacher_layer`` (a :class:`LiveTeacher` built with that feature layer),
    and ``r`` a trainable 1x1 convolution from ``student_channels`` to
    ``teacher_channels`` (optimised with the student by ``fit``). When the maps differ in
    size, the student's is resized to the teacher's by adaptive average pooling. The
    regressor is an extra network (:meth:`extra_modules`): trained, but not deployed.
    ``batch_norm=True`` follows the 1x1 convolution with batch normalisation (as the
    benchmark's ``ConvReg`` does, without its final ReLU: the maps here are taken before the
    activation and can be negative); it keeps the hint's gradient at a sane scale when the
    teacher's maps are large, where the bare convolution lets a large ``beta`` diverge.
    """

    def __init__(self, teacher: LiveTeacher, student_layer: str, teacher_layer: str,
                 student_channels: int, teacher_channels: int, beta: float = 1.0, batch_norm: bool = False):
        super().__init__(teacher)
        if teacher_layer not in getattr(teacher, "feature_layers", ()):
            raise ValueError(f"the teacher source keeps no features of {teacher_layer!r}: build it with "
                             f"LiveTeacher(model, feature_layers=[{teacher_layer!r}])")
        self.feature_layers = (student_layer,)
        self.student_layer, self.teacher_layer = student_layer, teacher_layer
        self.beta = check_positive("beta", beta)
        conv = nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False)
        self.regressor = nn.Sequential(conv, nn.BatchNorm2d(teacher_channels)) if batch_norm else conv

    def forward(self, outputs, batch: Batch):
        z = primary_logits(outputs)
        ce = F.cross_entropy(z.float(), batch.y)
        self.teacher(batch)
        target = self.teacher.features[self.teacher_layer].float()
        hint = self.regressor(batch.features[self.student_layer].float())
        if hint.shape[-2:] != target.shape[-2:]:
            hint = F.adaptive_avg_pool2d(hint, target.shape[-2:])
        mse = F.mse_loss(hint, target)
        return ce + self.beta * mse, {"ce": ce.detach(), "hint": mse.detach()}
