import math

import pytest
import torch
import torch.nn.functional as F

from kdutils.core.objective import Batch
from kdutils.distill import objectives as L
from kdutils.distill.teachers import ManualTarget, OwnPredictions, RecordedLogits

Z_S = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
Z_T = torch.tensor([[1.0, 1.5, -0.5], [2.0, -1.0, 0.0]])
Y = torch.tensor([0, 2])
IDX = torch.arange(2)


def _batch(y=Y, index=IDX, epoch=0):
    return Batch(torch.zeros(len(y), 3, 4, 4), y, index, epoch)


def _teacher(z=Z_T):
    """A source that serves ``z`` row by row (the recorded-logits source)."""
    return RecordedLogits(z)


def _softmax(v, t=1.0):
    e = [math.exp(a / t) for a in v]
    s = sum(e)
    return [a / s for a in e]


def test_kd_loss_matches_hand_computation():
    alpha, tau = 0.3, 2.0
    hard = soft = 0.0
    for zs, zt, y in zip(Z_S.tolist(), Z_T.tolist(), Y.tolist()):
        hard += -math.log(_softmax(zs)[y])
        ps, pt = _softmax(zs, tau), _softmax(zt, tau)
        soft += -sum(t * math.log(s) for t, s in zip(pt, ps))
    expected = (1 - alpha) * hard / 2 + alpha * tau**2 * soft / 2
    loss, parts = L.KDLoss(alpha, tau, teacher=_teacher())(Z_S, _batch())
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert parts["ce"].item() == pytest.approx(hard / 2, rel=1e-6)


def test_kd_ce_and_kl_forms_differ_by_teacher_entropy_with_equal_gradients():
    tau = 3.0
    zs1 = Z_S.clone().requires_grad_()
    zs2 = Z_S.clone().requires_grad_()
    ce, _ = L.KDLoss(1.0, tau, form="ce", teacher=_teacher())(zs1, _batch())
    kl, _ = L.KDLoss(1.0, tau, form="kl", teacher=_teacher())(zs2, _batch())
    pt = F.softmax(Z_T / tau, 1)
    entropy = -(pt * pt.log()).sum(1).mean() * tau**2
    assert (ce - kl).item() == pytest.approx(entropy.item(), rel=1e-5)
    ce.backward()
    kl.backward()
    assert torch.allclose(zs1.grad, zs2.grad, atol=1e-6)
    assert zs1.grad.abs().sum() > 0


def test_kd_alpha_extremes():
    ce_only, _ = L.KDLoss(0.0, 4.0, teacher=_teacher())(Z_S, _batch())
    assert ce_only.item() == pytest.approx(F.cross_entropy(Z_S, Y).item())
    kl_zero, _ = L.KDLoss(1.0, 4.0, form="kl", teacher=_teacher())(Z_T, _batch())
    assert kl_zero.item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("alpha,tau", [(-0.1, 1), (1.5, 1), (0.5, 0), (0.5, -2), (0.5, float("nan"))])
def test_kd_validates_alpha_and_tau(alpha, tau):
    with pytest.raises(ValueError):
        L.KDLoss(alpha, tau)


def test_kd_without_teacher_source_raises_before_training():
    with pytest.raises(ValueError, match="teacher source"):
        L.KDLoss(0.5, 2).prepare(torch.device("cpu"), None, False)
    with pytest.raises(ValueError, match="teacher source"):
        L.HintonKDLoss(1.0, 2).prepare(torch.device("cpu"), None, False)


def test_hinton_form():
    lam, tau = 2.5, 5.0
    loss, _ = L.HintonKDLoss(lam, tau, teacher=_teacher())(Z_S, _batch())
    pt = F.softmax(Z_T / tau, 1)
    kl = (pt * (pt.log() - F.log_softmax(Z_S / tau, 1))).sum(1).mean()
    assert loss.item() == pytest.approx(F.cross_entropy(Z_S, Y).item() + lam * tau**2 * kl.item(), rel=1e-6)
    with pytest.raises(ValueError):
        L.HintonKDLoss(-1.0, 2.0)


def test_tfkd_manual_soft_target():
    q = L.manual_soft_target(torch.tensor([1, 0]), 4, a=0.7)
    assert torch.allclose(q[0], torch.tensor([0.1, 0.7, 0.1, 0.1]))
    assert torch.allclose(q.sum(1), torch.ones(2))
    loss, parts = L.TfKDRegLoss(3, 0.5, 10.0, 0.9)(Z_S, _batch())
    assert torch.isfinite(loss) and set(parts) == {"ce", "reg"}
    # Tf-KD reg is KD (KL form) whose teacher logits are the manual target
    kd, _ = L.KDLoss(0.5, 10.0, form="kl", teacher=ManualTarget(3, 0.9))(Z_S, _batch())
    assert torch.equal(loss, kd)
    with pytest.raises(ValueError, match="num_classes"):
        ManualTarget(1, 0.9)


def test_pskd_alpha_schedule_is_linear():
    assert L.pskd_alpha(0, 5, 0.8) == 0.0
    assert L.pskd_alpha(2, 5, 0.8) == pytest.approx(0.4)
    assert L.pskd_alpha(4, 5, 0.8) == pytest.approx(0.8)


def test_pskd_targets_mix_label_with_previous_prediction():
    obj = L.PSKDLoss(num_samples=4, num_classes=3, alpha_T=0.8, epochs=3)
    idx = torch.tensor([0, 2])
    # epoch 0: alpha 0, pure one-hot targets; the prediction is stored
    loss0, _ = obj(Z_S, _batch(index=idx, epoch=0))
    assert loss0.item() == pytest.approx(F.cross_entropy(Z_S, Y).item(), rel=1e-6)
    assert torch.allclose(obj.teacher.memory[idx], F.softmax(Z_S, 1))
    # epoch 1: alpha 0.4, target = 0.6 * onehot + 0.4 * previous prediction
    t = obj.targets_for(_batch(index=idx, epoch=1))
    expected = 0.6 * F.one_hot(Y, 3).float() + 0.4 * F.softmax(Z_S, 1)
    assert torch.allclose(t, expected)
    # samples never seen keep the one-hot label
    t_new = obj.targets_for(_batch(torch.tensor([1]), torch.tensor([1]), epoch=1))
    assert torch.allclose(t_new, F.one_hot(torch.tensor([1]), 3).float())
    # the memory is part of the state dict (saved in checkpoints)
    assert "teacher.memory" in obj.state_dict() and isinstance(obj.teacher, OwnPredictions)


def test_lwf_distillation_minimum_and_vanishing_gradient():
    rec = torch.randn(5, 10)
    old = rec.clone().requires_grad_()
    d = L.lwf_distillation(old, rec, T=2.0, form="kl")
    assert d.item() == pytest.approx(0.0, abs=1e-6)
    d.backward()
    assert old.grad.abs().max().item() < 1e-6
    old2 = rec.clone().requires_grad_()
    L.lwf_distillation(old2, rec, T=2.0, form="ce").backward()
    assert old2.grad.abs().max().item() < 1e-6
    # away from the recorded responses the term is larger
    assert L.lwf_distillation(rec + torch.randn(5, 10), rec, form="kl").item() > 1e-3


def test_lwf_loss_combines_terms():
    rec = torch.randn(4, 10)
    obj = L.LwFLoss(rec, lambda0=2.0, T=2.0, form="kl")
    new = torch.randn(2, 7)
    idx = torch.tensor([1, 3])
    loss, parts = obj((new, rec[idx]), _batch(torch.tensor([0, 6]), idx))
    assert loss.item() == pytest.approx(F.cross_entropy(new, torch.tensor([0, 6])).item(), abs=1e-5)
    with pytest.raises(ValueError, match="new_logits, old_logits"):
        obj(new, _batch(torch.tensor([0, 6]), idx))


def test_checkpoints_of_the_old_layout_still_load():
    """Objective states saved before the buffers moved into the teacher source
    (``memory`` instead of ``teacher.memory``) load into the new objectives."""
    obj = L.PSKDLoss(num_samples=4, num_classes=3, alpha_T=0.8, epochs=3)
    old_state = {"memory": torch.full((4, 3), 0.25), "filled": torch.ones(4, dtype=torch.bool)}
    obj.load_state_dict(old_state)
    assert torch.equal(obj.teacher.memory, old_state["memory"]) and bool(obj.teacher.filled.all())
    lwf = L.LwFLoss(torch.zeros(4, 10))
    lwf.load_state_dict({"recorded": torch.ones(4, 10)})
    assert torch.equal(lwf.teacher.recorded, torch.ones(4, 10))
    with pytest.raises(RuntimeError, match="bogus"):
        obj.load_state_dict({**old_state, "bogus": torch.zeros(1)})


def test_hint_loss_needs_the_teacher_feature_and_matches_by_hand():
    from torch import nn

    from kdutils.distill.teachers import LiveTeacher

    teacher_net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="feature_layers"):
        L.HintLoss(LiveTeacher(teacher_net), "0", "0", 2, 4)
    source = LiveTeacher(teacher_net, feature_layers=["0"])
    obj = L.HintLoss(source, "conv", "0", student_channels=2, teacher_channels=4, beta=0.5)
    source.prepare(torch.device("cpu"), None, False)
    batch = _batch()
    batch.features["conv"] = torch.randn(2, 2, 8, 8)  # larger map: pooled to the teacher's 4x4
    loss, parts = obj(Z_S, batch)
    f_t = teacher_net[0](batch.x)
    hint = F.adaptive_avg_pool2d(obj.regressor(batch.features["conv"]), (4, 4))
    expected = F.cross_entropy(Z_S, Y) + 0.5 * F.mse_loss(hint, f_t)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5) and set(parts) == {"ce", "hint"}


def _zscore(v):
    m = sum(v) / len(v)
    sd = math.sqrt(sum((a - m) ** 2 for a in v) / (len(v) - 1))  # unbiased, as the authors' code
    return [(a - m) / (sd + 1e-7) for a in v]


def test_standardize_logits_is_the_row_zscore():
    out = L.standardize_logits(Z_S)
    for row, expected in zip(out.tolist(), (_zscore(r) for r in Z_S.tolist())):
        assert row == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_kd_with_logit_standardization_matches_hand_computation():
    alpha, tau = 0.9, 2.0
    hard = soft = 0.0
    for zs, zt, y in zip(Z_S.tolist(), Z_T.tolist(), Y.tolist()):
        hard += -math.log(_softmax(zs)[y])  # the hard term keeps the raw logits
        ps, pt = _softmax(_zscore(zs), tau), _softmax(_zscore(zt), tau)
        soft += sum(t * math.log(t / s) for t, s in zip(pt, ps))
    expected = (1 - alpha) * hard / 2 + alpha * tau**2 * soft / 2
    loss, _ = L.KDLoss(alpha, tau, form="kl", teacher=_teacher(), standardize=True)(Z_S, _batch())
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # The soft term no longer sees the logits' scale or shift: the student need not match the teacher's range.
    same, _ = L.KDLoss(alpha, tau, form="kl", teacher=_teacher(3 * Z_T + 5), standardize=True)(Z_S, _batch())
    assert same.item() == pytest.approx(loss.item(), rel=1e-5)
    assert "standardize=True" in repr(L.KDLoss(teacher=_teacher(), standardize=True))
    assert "standardize" not in repr(L.KDLoss(teacher=_teacher()))  # old records' text unchanged


def test_hinton_kd_with_logit_standardization():
    lam, tau = 9.0, 2.0
    loss, parts = L.HintonKDLoss(lam, tau, teacher=_teacher(), standardize=True)(Z_S, _batch())
    kl = sum(sum(t * math.log(t / s) for t, s in zip(_softmax(_zscore(zt), tau), _softmax(_zscore(zs), tau)))
             for zs, zt in zip(Z_S.tolist(), Z_T.tolist())) / 2
    assert parts["kd"].item() == pytest.approx(tau**2 * kl, rel=1e-5)
    assert loss.item() == pytest.approx(F.cross_entropy(Z_S, Y).item() + lam * tau**2 * kl, rel=1e-5)


def test_hint_regressor_is_an_extra_module():
    from kdutils.distill.teachers import LiveTeacher

    teacher_net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1))
    obj = L.HintLoss(LiveTeacher(teacher_net, feature_layers=["0"]), "conv", "0", 2, 4)
    assert list(obj.extra_modules()) == ["regressor"] and obj.extra_parameter_count() == 2 * 4


def test_hint_regressor_with_batch_norm_matches_by_hand():
    from kdutils.distill.teachers import LiveTeacher

    teacher_net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1))
    source = LiveTeacher(teacher_net, feature_layers=["0"])
    source.prepare(torch.device("cpu"), None, False)
    obj = L.HintLoss(source, "conv", "0", 2, 4, beta=100.0, batch_norm=True)
    conv, bn = obj.regressor
    assert obj.extra_parameter_count() == 2 * 4 + 2 * 4  # the 1x1 conv and the affine batch norm
    batch = _batch()
    batch.features["conv"] = torch.randn(2, 2, 4, 4)
    loss, parts = obj(Z_S, batch)
    h = conv(batch.features["conv"])
    mean, var = h.mean(dim=(0, 2, 3), keepdim=True), h.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    hint = (h - mean) / torch.sqrt(var + bn.eps)  # training-mode batch norm, weight 1 and bias 0 at the start
    expected = F.mse_loss(hint, teacher_net[0](batch.x))
    assert parts["hint"].item() == pytest.approx(expected.item(), rel=1e-4)
    assert loss.item() == pytest.approx(F.cross_entropy(Z_S, Y).item() + 100.0 * expected.item(), rel=1e-4)
