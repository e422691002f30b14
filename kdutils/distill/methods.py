"""More distillation methods, each an :class:`~kdutils.core.objective.Objective` (or, for
TAKD, a short chain of ``fit`` calls), so ``fit`` trains them unchanged.

=============================  ===============================  ==============================
objective / helper             learns from                      extra networks
=============================  ===============================  ==============================
:class:`AttentionTransferLoss` the teacher's spatial attention  none
:class:`RKDLoss`               distances and angles between     none
                               the teacher's embeddings
:class:`DKDLoss`               the teacher's logits, target and none
                               non-target parts weighted apart
:class:`DMLLoss`               a peer student trained alongside the peer (``extra_modules``)
:func:`takd_chain`             teacher -> assistant(s) ->       the assistants (trained
                               student, KD at every link        before the student)
=============================  ===============================  ==============================

FitNets is :class:`kdutils.distill.objectives.HintLoss` (its regressor is its extra
network) and logit standardization is the ``standardize`` option of every logit objective
(:func:`kdutils.distill.objectives.standardize_logits`). An objective's extra networks are
reported by :meth:`~kdutils.core.objective.Objective.extra_modules` /
``extra_parameter_count()``: ``fit`` optimises and checkpoints them, tables count them, and
the deployed student's parameter count (and any budget check on it) leaves them out.
Feature-based objectives name the student's layers (``feature_layers``, captured by ``fit``)
and read the teacher's from a :class:`~kdutils.distill.teachers.LiveTeacher` built with
``feature_layers``; :func:`layer_output_shape` tells a layer's output shape (channels for a
regressor).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from kdutils.core.objective import Batch, FeatureTaps, Objective, check_positive
from kdutils.core.outputs import primary_logits
from kdutils.core.precision import autocast_context
from kdutils.core.recipe import Recipe
from kdutils.core.train import Run, Runtime, fit
from kdutils.distill.objectives import KDLoss, soft_kl, standardize_logits
from kdutils.distill.teachers import LiveTeacher

__all__ = ["layer_output_shape", "attention_map", "AttentionTransferLoss", "pairwise_distances", "rkd_distance",
           "rkd_angle", "RKDLoss", "dkd_terms", "DKDLoss", "DMLLoss", "takd_chain"]


@torch.no_grad()
def layer_output_shape(model: nn.Module, layer: str, input_size: Sequence[int] = (2, 3, 32, 32)) -> tuple:
    """The output shape of ``model``'s module ``layer`` for an input of ``input_size``
    (one dry forward pass in ``eval()``, on the model's device), e.g. to size a regressor."""
    taps = FeatureTaps(model, [layer])
    was = model.training
    try:
        model.eval()
        model(torch.zeros(*input_size, device=next(model.parameters()).device))
        return tuple(taps.features[layer].shape)
    finally:
        taps.remove()
        model.train(was)


def _teacher_features(objective: Objective, batch: Batch, layers: Sequence[str]) -> list:
    """Run the live teacher on the batch; its features of ``layers`` (float)."""
    objective.teacher(batch)
    return [objective.teacher.features[n].float() for n in layers]


def _check_teacher_layers(teacher, layers: Sequence[str]) -> None:
    missing = [n for n in layers if n not in getattr(teacher, "feature_layers", ())]
    if missing:
        raise ValueError(f"the teacher source keeps no features of {missing}: build it with "
                         f"LiveTeacher(model, feature_layers={list(layers)!r})")


# --------------------------------------------------------------------------- attention transfer
def attention_map(features: torch.Tensor, size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """Activation-based spatial attention of a (N, C, H, W) map: the mean over channels of
    the squared activations, optionally average-pooled to ``size``, flattened and
    L2-normalised per sample: (N, H*W)."""
    a = features.float().pow(2).mean(dim=1, keepdim=True)
    if size is not None and tuple(a.shape[-2:]) != tuple(size):
        a = F.adaptive_avg_pool2d(a, size)
    return F.normalize(a.flatten(1), dim=1)


class AttentionTransferLoss(Objective):
    """Attention transfer (Zagoruyko & Komodakis, "Paying More Attention to Attention:
    Improving the Performance of Convolutional Neural Networks via Attention Transfer",
    ICLR 2017, https://arxiv.org/abs/1612.03928), activation-based, p = 2:

        L = CE(z_S, y) + beta / 2 * sum_j mean((Q_S^j - Q_T^j)^2)

    where ``Q^j`` is :func:`attention_map` of the j-th pair of layers (``pairs``:
    ``(student_layer, teacher_layer)``) and the mean runs over the batch and the H*W
    positions (the paper's beta = 1000 "divided by the number of elements in the attention
    map and batch size"). A student map of another size is pooled to the teacher's.
    """

    needs_teacher = True

    def __init__(self, teacher: LiveTeacher, pairs: Sequence[Tuple[str, str]], beta: float = 1000.0):
        super().__init__(teacher)
        if not pairs:
            raise ValueError("AttentionTransferLoss needs at least one (student_layer, teacher_layer) pair")
        self.pairs = [tuple(p) for p in pairs]
        _check_teacher_layers(teacher, [t for _, t in self.pairs])
        self.feature_layers = tuple(s for s, _ in self.pairs)
        self.beta = check_positive("beta", beta)

    def forward(self, outputs, batch: Batch):
        z = primary_logits(outputs)
        ce = F.cross_entropy(z.float(), batch.y)
        targets = _teacher_features(self, batch, [t for _, t in self.pairs])
        at = sum((attention_map(batch.features[s], f_t.shape[-2:]) - attention_map(f_t)).pow(2).mean()
                 for (s, _), f_t in zip(self.pairs, targets))
        return ce + self.beta / 2 * at, {"ce": ce.detach(), "at": at.detach()}


# --------------------------------------------------------------------------- relational KD
def pairwise_distances(e: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of ``e`` (N, D): (N, N), zero diagonal (with a
    finite gradient there)."""
    d = (e.unsqueeze(0) - e.unsqueeze(1)).pow(2).sum(-1).clamp_min(1e-12).sqrt()
    return d * (1 - torch.eye(len(e), device=e.device, dtype=d.dtype))


def _normalised_distances(e: torch.Tensor) -> torch.Tensor:
    d = pairwise_distances(e)
    n = len(e)
    return d / (d.sum() / max(n * (n - 1), 1)).clamp_min(1e-12)


def rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD's distance-wise loss: Huber (smooth L1) between the two N x N distance matrices,
    each divided by its mean distance over the distinct pairs; mean over the N^2 entries."""
    with torch.no_grad():
        t = _normalised_distances(teacher.float().flatten(1))
    return F.smooth_l1_loss(_normalised_distances(student.float().flatten(1)), t)


def _angles(e: torch.Tensor) -> torch.Tensor:
    """``cos`` of the angle at every j between i and k: <e_i - e_j, e_k - e_j> of unit vectors, (N, N, N)."""
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), dim=2)  # diff[j, i] = unit(e_i - e_j)
    return diff @ diff.transpose(1, 2)


def rkd_angle(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD's angle-wise loss: Huber between the cosines of all N^3 triplet angles."""
    with torch.no_grad():
        t = _angles(teacher.float().flatten(1))
    return F.smooth_l1_loss(_angles(student.float().flatten(1)), t)


class RKDLoss(Objective):
    """Relational knowledge distillation (Park, Kim, Lu & Cho, "Relational Knowledge
    Distillation", CVPR 2019, https://arxiv.org/abs/1904.05068): the student copies the
    *structure* of the teacher's embeddings in a batch, not the embeddings themselves:

        L = CE(z_S, y) + w_dist * rkd_distance(e_S, e_T) + w_angle * rkd_angle(e_S, e_T)

    ``e`` are the (flattened) outputs of ``student_layer`` and ``teacher_layer`` (e.g. the
    pooled features, ``"pool"`` of the CIFAR ResNets); their widths may differ. Defaults
    25 / 50 are the CIFAR-100 weights of Tian et al.'s benchmark (CRD, ICLR 2020).
    """

    needs_teacher = True
    shown = Objective.shown + ("w_dist", "w_angle")

    def __init__(self, teacher: LiveTeacher, student_layer: str, teacher_layer: str, w_dist: float = 25.0,
                 w_angle: float = 50.0):
        super().__init__(teacher)
        _check_teacher_layers(teacher, [teacher_layer])
        self.feature_layers = (student_layer,)
        self.student_layer, self.teacher_layer = student_layer, teacher_layer
        if min(w_dist, w_angle) < 0 or w_dist + w_angle <= 0:
            raise ValueError(f"RKD weights must be >= 0 and not both 0, got w_dist={w_dist!r}, w_angle={w_angle!r}")
        self.w_dist, self.w_angle = float(w_dist), float(w_angle)

    def forward(self, outputs, batch: Batch):
        z = primary_logits(outputs)
        ce = F.cross_entropy(z.float(), batch.y)
        (e_t,) = _teacher_features(self, batch, [self.teacher_layer])
        e_s = batch.features[self.student_layer]
        dist, angle = rkd_distance(e_s, e_t), rkd_angle(e_s, e_t)
        loss = ce + self.w_dist * dist + self.w_angle * angle
        return loss, {"ce": ce.detach(), "rkd_dist": dist.detach(), "rkd_angle": angle.detach()}


# --------------------------------------------------------------------------- decoupled KD
def dkd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor,
              tau: float = 4.0, standardize: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(TCKD, NCKD)``, each times ``tau**2`` and averaged over the batch.

    TCKD: KL between the teacher's and the student's binary distributions (target class,
    all others) at ``tau``. NCKD: KL between their distributions over the non-target
    classes only (softmax of the other logits at ``tau``). Per sample, classical KD's KL
    equals ``TCKD + (1 - p_t^T) * NCKD`` (Zhao et al., Eq. 1), which the tests check.
    """
    if standardize:
        student_logits, teacher_logits = standardize_logits(student_logits), standardize_logits(teacher_logits)
    s, t = student_logits.float() / tau, teacher_logits.float() / tau
    target = F.one_hot(y, s.shape[1]).bool()
    n, others = s.shape[0], s.shape[1] - 1

    def split(v):
        lse = v.logsumexp(dim=1)
        rest = v[~target].view(n, others)
        binary = torch.stack([v[target] - lse, rest.logsumexp(dim=1) - lse], dim=1)
        return binary, F.log_softmax(rest, dim=1)

    (bs, ns), (bt, nt) = split(s), split(t)
    tckd = (bt.exp() * (bt - bs)).sum(1).mean()
    nckd = (nt.exp() * (nt - ns)).sum(1).mean()
    return tau**2 * tckd, tau**2 * nckd


class DKDLoss(Objective):
    """Decoupled knowledge distillation (Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge
    Distillation", CVPR 2022, https://arxiv.org/abs/2203.08679):

        L = CE(z_S, y) + w(epoch) * (alpha * TCKD + beta * NCKD)       (:func:`dkd_terms`)

    Classical KD couples the non-target term to the teacher's confidence (``1 - p_t``),
    which suppresses it exactly for the samples the teacher knows well; DKD weights the
    two parts independently. ``w`` ramps linearly to 1 over ``warmup_epochs`` (the
    authors: 20 of 240 epochs; ``alpha=1, beta=8, tau=4`` on CIFAR-100).
    ``standardize=True``: logit standardization of both logits first.
    """

    needs_teacher = True
    shown = Objective.shown + ("warmup_epochs", "standardize")

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, tau: float = 4.0, warmup_epochs: int = 20,
                 teacher=None, standardize: bool = False):
        super().__init__(teacher)
        if min(alpha, beta) < 0:
            raise ValueError(f"DKD weights alpha and beta must be >= 0, got {alpha!r}, {beta!r}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.tau = check_positive("temperature tau", tau)
        if not (isinstance(warmup_epochs, int) and warmup_epochs >= 0):
            raise ValueError(f"warmup_epochs must be an int >= 0, got {warmup_epochs!r}")
        self.warmup_epochs = warmup_epochs
        self.standardize = bool(standardize)

    def forward(self, outputs, batch: Batch):
        z = primary_logits(outputs)
        ce = F.cross_entropy(z.float(), batch.y)
        tckd, nckd = dkd_terms(z, self.teacher(batch), batch.y, self.tau, self.standardize)
        ramp = min((batch.epoch + 1) / self.warmup_epochs, 1.0) if self.warmup_epochs else 1.0
        loss = ce + ramp * (self.alpha * tckd + self.beta * nckd)
        return loss, {"ce": ce.detach(), "tckd": tckd.detach(), "nckd": nckd.detach()}


# --------------------------------------------------------------------------- deep mutual learning
class DMLLoss(Objective):
    """Deep mutual learning (Zhang, Xiang, Hospedales & Lu, "Deep Mutual Learning", CVPR
    2018, https://arxiv.org/abs/1706.00384): two students learn from the labels and from
    each other, no pre-trained teacher. The model ``fit`` trains is student 1; the objective
    owns student 2 (``peer``, a submodule: ``fit`` optimises it with the same recipe and
    saves it in the checkpoint) and runs it on the batch:

        L_1 = CE(z_1, y) + weight * tau^2 * KL(p_2 || p_1)     (p_2 held fixed)
        L_2 = CE(z_2, y) + weight * tau^2 * KL(p_1 || p_2)     (p_1 held fixed)

    The step minimises ``L_1 + L_2``: each network receives exactly the gradient of its
    own loss, and both are updated at once (the paper updates them in turn, the second
    with the first's new predictions; with small steps the two agree). The peer must
    start from *other* weights than the model (build it after the model, from the same
    seed's RNG), or the two stay identical and the KL terms vanish. ``standardize=True``:
    logit standardization inside the KL terms. History: ``train_ce``/``train_dml`` are
    student 1's, ``train_peer_*`` the peer's (``peer_top1`` in %).
    """

    shown = Objective.shown + ("weight", "standardize")

    def __init__(self, peer: nn.Module, tau: float = 1.0, weight: float = 1.0, standardize: bool = False):
        super().__init__()
        self.peer = peer
        self.tau = check_positive("temperature tau", tau)
        self.weight = check_positive("weight", weight)
        self.standardize = bool(standardize)
        self.dtype: Optional[torch.dtype] = None

    def __repr__(self) -> str:  # the record's "objective": the peer named, not printed layer by layer
        n = sum(p.numel() for p in self.peer.parameters())
        return f"DMLLoss(peer={type(self.peer).__name__} ({n:,} parameters), {self.extra_repr()})"

    def prepare(self, device, dtype, channels_last) -> "DMLLoss":
        super().prepare(device, dtype, channels_last)
        if channels_last:
            self.peer.to(memory_format=torch.channels_last)
        self.dtype = dtype
        return self

    def mutual_kl(self, learner: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """``tau^2 * KL(p_other || p_learner)``, the other network's prediction held fixed."""
        if self.standardize:
            learner, other = standardize_logits(learner), standardize_logits(other)
        target = F.softmax(other.detach().float() / self.tau, dim=1)
        return self.tau**2 * soft_kl(learner, target, self.tau)

    def forward(self, outputs, batch: Batch):
        z1 = primary_logits(outputs).float()
        with autocast_context(batch.x.device, self.dtype):
            z2 = primary_logits(self.peer(batch.x)).float()
        ce1, ce2 = F.cross_entropy(z1, batch.y), F.cross_entropy(z2, batch.y)
        kl1, kl2 = self.mutual_kl(z1, z2), self.mutual_kl(z2, z1)
        loss = ce1 + self.weight * kl1 + ce2 + self.weight * kl2
        peer_top1 = 100.0 * z2.detach().argmax(1).eq(batch.y).float().mean()
        return loss, {"ce": ce1.detach(), "dml": kl1.detach(), "peer_ce": ce2.detach(), "peer_dml": kl2.detach(),
                      "peer_top1": peer_top1}


# --------------------------------------------------------------------------- teacher-assistant KD
def takd_chain(networks: Sequence[nn.Module], train_loader, test_loader, recipe: Recipe,
               make_objective: Optional[Callable[[nn.Module], Objective]] = None,
               runs: Optional[Sequence[Optional[Run]]] = None, runtime: Optional[Runtime] = None) -> list:
    """Teacher-assistant KD (Mirzadeh, Farajtabar, Li, Levine, Matsukawa & Ghasemzadeh,
    "Improved Knowledge Distillation via Teacher Assistant", AAAI 2020,
    https://arxiv.org/abs/1902.03393): when teacher and student differ too much in size, distil
    through networks of intermediate size, each taught by the one before it.

    ``networks``: ``[teacher (trained), assistant_1, ..., student]``; every network after the
    first is trained in turn with ``fit`` and ``make_objective(previous_network)`` (default:
    ``KDLoss(0.9, 4, teacher=LiveTeacher(previous))``), then frozen to teach the next.
    ``runs``: one :class:`Run` (or None) per trained network. Returns their records.
    """
    if len(networks) < 2:
        raise ValueError(f"takd_chain needs a teacher and at least one network to train, got {len(networks)}")
    trained = list(networks[1:])
    runs = list(runs) if runs is not None else [None] * len(trained)
    if len(runs) != len(trained):
        raise ValueError(f"takd_chain got {len(runs)} runs for {len(trained)} networks to train (one each, or None)")
    make = make_objective or (lambda t: KDLoss(0.9, 4.0, teacher=LiveTeacher(t)))
    records = []
    for previous, network, run in zip(networks[:-1], trained, runs):
        previous.eval().requires_grad_(False)
        records.append(fit(network, train_loader, test_loader, recipe, make(previous), run, runtime=runtime))
    return records
