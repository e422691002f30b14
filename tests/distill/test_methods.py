"""kdutils.distill.methods: attention transfer, RKD, DKD, DML and TAKD against hand computations."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdutils.core.objective import Batch
from kdutils.core.recipe import Recipe
from kdutils.core.train import Run, Runtime
from kdutils.distill import methods as M
from kdutils.distill.objectives import KDLoss
from kdutils.distill.teachers import LiveTeacher, RecordedLogits
from tests.helpers import tiny_loader, tiny_student

Z_S = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
Z_T = torch.tensor([[1.0, 1.5, -0.5], [2.0, -1.0, 0.0]])
Y = torch.tensor([0, 2])
QUIET = Runtime(log="off", device="cpu", amp="off", channels_last=False)


def _softmax(v, t=1.0):
    e = [math.exp(a / t) for a in v]
    return [a / sum(e) for a in e]


def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def _huber(a, b):
    d = abs(a - b)
    return 0.5 * d * d if d < 1 else d - 0.5


def _identity_teacher():
    """A live teacher whose feature ``"0"`` is the input itself."""
    net = nn.Sequential(nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    source = LiveTeacher(net, feature_layers=["0"])
    source.prepare(torch.device("cpu"), None, False)
    return source


def test_layer_output_shape():
    net = nn.Sequential(nn.Conv2d(3, 5, 3, stride=2, padding=1), nn.AdaptiveAvgPool2d(1))
    assert M.layer_output_shape(net, "0", (2, 3, 8, 8)) == (2, 5, 4, 4)
    assert net.training and not net[0]._forward_hooks  # mode restored, hook removed


def test_attention_transfer_matches_hand_computation():
    torch.manual_seed(0)
    f_s, f_t = torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 2)
    expected_at = 0.0
    for s, t in zip(f_s.tolist(), f_t.tolist()):
        maps = []
        for f in (s, t):
            a = [sum(f[c][h][w] ** 2 for c in range(3)) / 3 for h in range(2) for w in range(2)]
            norm = math.sqrt(sum(v * v for v in a))
            maps.append([v / norm for v in a])
        expected_at += sum((a - b) ** 2 for a, b in zip(*maps))
    expected_at /= 2 * 4  # mean over the batch and the 2x2 positions
    obj = M.AttentionTransferLoss(_identity_teacher(), [("s", "0")], beta=1000.0)
    assert obj.feature_layers == ("s",)
    batch = Batch(f_t, Y, features={"s": f_s})
    loss, parts = obj(Z_S, batch)
    assert parts["at"].item() == pytest.approx(expected_at, rel=1e-5)
    assert loss.item() == pytest.approx(F.cross_entropy(Z_S, Y).item() + 500.0 * expected_at, rel=1e-5)
    # a larger student map is pooled to the teacher's size first
    big = f_s.repeat_interleave(2, 2).repeat_interleave(2, 3)  # each position repeated 2x2
    assert torch.allclose(M.attention_map(big, (2, 2)), M.attention_map(f_s), atol=1e-6)
    with pytest.raises(ValueError, match="feature_layers"):
        M.AttentionTransferLoss(LiveTeacher(nn.Identity()), [("s", "0")])


POINTS_T = [[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]]
POINTS_S = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]


def _hand_rkd(points_s, points_t):
    def norm_dist(p):
        d = [[math.dist(a, b) for b in p] for a in p]
        mean = sum(map(sum, d)) / (len(p) * (len(p) - 1))
        return [v / mean for row in d for v in row]

    def cosines(p):
        out = []
        for j in range(len(p)):
            for i in range(len(p)):
                for k in range(len(p)):
                    u = [a - b for a, b in zip(p[i], p[j])]
                    v = [a - b for a, b in zip(p[k], p[j])]
                    nu, nv = math.hypot(*u), math.hypot(*v)
                    out.append(0.0 if nu == 0 or nv == 0 else (u[0] * v[0] + u[1] * v[1]) / (nu * nv))
        return out

    dist = [_huber(a, b) for a, b in zip(norm_dist(points_s), norm_dist(points_t))]
    ang = [_huber(a, b) for a, b in zip(cosines(points_s), cosines(points_t))]
    return sum(dist) / len(dist), sum(ang) / len(ang)


def test_rkd_distance_and_angle_match_hand_computation():
    e_s, e_t = torch.tensor(POINTS_S), torch.tensor(POINTS_T)
    dist, ang = _hand_rkd(POINTS_S, POINTS_T)
    assert M.rkd_distance(e_s, e_t).item() == pytest.approx(dist, rel=1e-5)
    assert M.rkd_angle(e_s, e_t).item() == pytest.approx(ang, rel=1e-5)
    assert M.pairwise_distances(e_t).tolist()[1] == pytest.approx([3.0, 0.0, 5.0])


def test_rkd_is_blind_to_scale_rotation_and_translation_but_not_to_shape():
    e_t = torch.tensor(POINTS_T)
    c, s = math.cos(0.7), math.sin(0.7)
    moved = 2.5 * e_t @ torch.tensor([[c, -s], [s, c]]) + torch.tensor([1.0, -2.0])
    e_s = moved.clone().requires_grad_()
    assert M.rkd_distance(e_s, e_t).item() == pytest.approx(0.0, abs=1e-6)
    assert M.rkd_angle(e_s, e_t).item() == pytest.approx(0.0, abs=1e-6)
    loss = M.rkd_distance(e_s, e_t) + M.rkd_angle(e_s, e_t)
    loss.backward()
    assert torch.isfinite(e_s.grad).all()  # no NaN from the zero self-distances


def test_rkd_loss_weights_the_terms_and_checks_them():
    teacher = _identity_teacher()
    obj = M.RKDLoss(teacher, "emb", "0", w_dist=25.0, w_angle=50.0)
    x = torch.tensor(POINTS_T).view(3, 2, 1, 1)  # the teacher's "0" features: 3 embeddings of width 2
    batch = Batch(x, torch.tensor([0, 1, 2]), features={"emb": torch.tensor(POINTS_S)})
    z = torch.zeros(3, 3)
    loss, parts = obj(z, batch)
    dist, ang = _hand_rkd(POINTS_S, POINTS_T)
    assert loss.item() == pytest.approx(math.log(3) + 25 * dist + 50 * ang, rel=1e-5)
    assert set(parts) == {"ce", "rkd_dist", "rkd_angle"}
    with pytest.raises(ValueError, match="RKD weights"):
        M.RKDLoss(teacher, "emb", "0", w_dist=-1.0)


def _hand_dkd(zs, zt, y, tau):
    ps, pt = _softmax(zs, tau), _softmax(zt, tau)
    tckd = _kl([pt[y], 1 - pt[y]], [ps[y], 1 - ps[y]])
    rest = [k for k in range(len(zs)) if k != y]
    nckd = _kl(_softmax([zt[k] for k in rest], tau), _softmax([zs[k] for k in rest], tau))
    return tau**2 * tckd, tau**2 * nckd, tau**2 * _kl(pt, ps), pt[y]


def test_dkd_terms_match_hand_computation_and_decompose_kd():
    tau = 2.0
    hand = [_hand_dkd(zs, zt, y, tau) for zs, zt, y in zip(Z_S.tolist(), Z_T.tolist(), Y.tolist())]
    tckd, nckd = M.dkd_terms(Z_S, Z_T, Y, tau)
    assert tckd.item() == pytest.approx(sum(h[0] for h in hand) / 2, rel=1e-5)
    assert nckd.item() == pytest.approx(sum(h[1] for h in hand) / 2, rel=1e-5)
    for i, (t, n, kd, p_target) in enumerate(hand):  # Zhao et al., Eq. 1, sample by sample
        one_t, one_n = M.dkd_terms(Z_S[i:i + 1], Z_T[i:i + 1], Y[i:i + 1], tau)
        assert kd == pytest.approx(one_t.item() + (1 - p_target) * one_n.item(), rel=1e-5)


def test_dkd_loss_ramps_up_and_takes_the_standardization_option():
    obj = M.DKDLoss(alpha=1.0, beta=8.0, tau=2.0, warmup_epochs=4, teacher=RecordedLogits(Z_T))
    tckd, nckd = M.dkd_terms(Z_S, Z_T, Y, 2.0)
    ce = F.cross_entropy(Z_S, Y).item()
    for epoch, ramp in ((0, 0.25), (1, 0.5), (3, 1.0), (10, 1.0)):
        loss, _ = obj(Z_S, Batch(torch.zeros(2, 3, 1, 1), Y, torch.arange(2), epoch))
        assert loss.item() == pytest.approx(ce + ramp * (tckd.item() + 8 * nckd.item()), rel=1e-5)
    std_t, std_n = M.dkd_terms(Z_S, 4 * Z_T - 1, Y, 2.0, standardize=True)
    ref_t, ref_n = M.dkd_terms(Z_S, Z_T, Y, 2.0, standardize=True)
    assert (std_t.item(), std_n.item()) == pytest.approx((ref_t.item(), ref_n.item()), rel=1e-5)
    with pytest.raises(ValueError, match="warmup_epochs"):
        M.DKDLoss(warmup_epochs=1.5)


class _Fixed(nn.Module):
    """A 'network' that returns a trainable logit table, whatever the input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(logits.clone())

    def forward(self, x):
        return self.logits


def test_dml_matches_hand_computation_and_gives_each_network_its_own_gradient():
    tau, weight = 2.0, 0.5
    student, peer = _Fixed(Z_S), _Fixed(Z_T)
    obj = M.DMLLoss(peer, tau=tau, weight=weight).prepare(torch.device("cpu"), None, False)
    assert list(obj.extra_modules()) == ["peer"] and obj.extra_parameter_count() == 6
    loss, parts = obj(student(None), Batch(torch.zeros(2, 1), Y))
    kl1 = sum(_kl(_softmax(b, tau), _softmax(a, tau)) for a, b in zip(Z_S.tolist(), Z_T.tolist())) / 2
    kl2 = sum(_kl(_softmax(a, tau), _softmax(b, tau)) for a, b in zip(Z_S.tolist(), Z_T.tolist())) / 2
    ce1, ce2 = F.cross_entropy(Z_S, Y).item(), F.cross_entropy(Z_T, Y).item()
    assert parts["dml"].item() == pytest.approx(tau**2 * kl1, rel=1e-5)
    assert parts["peer_dml"].item() == pytest.approx(tau**2 * kl2, rel=1e-5)
    assert loss.item() == pytest.approx(ce1 + ce2 + weight * tau**2 * (kl1 + kl2), rel=1e-5)
    assert parts["peer_top1"].item() == 0.0  # the peer predicts class 1 for label 0 and class 0 for label 2
    loss.backward()
    # student 1's gradient is that of its own loss only (the peer's prediction held fixed)
    z = Z_S.clone().requires_grad_()
    own = F.cross_entropy(z, Y) + weight * tau**2 * F.kl_div(F.log_softmax(z / tau, 1), F.softmax(Z_T / tau, 1),
                                                             reduction="batchmean")
    own.backward()
    assert torch.allclose(student.logits.grad, z.grad, atol=1e-6)
    assert "DMLLoss(peer=_Fixed (6 parameters)" in repr(obj)


def test_dml_trains_both_students_through_fit_unchanged(tmp_path):
    from kdutils.core.train import fit

    student, peer = tiny_student(), tiny_student()
    torch.manual_seed(7)
    for p in peer.parameters():  # other initial weights than the student's
        p.data.normal_(0, 0.05)
    before = [p.detach().clone() for p in peer.parameters()]
    obj = M.DMLLoss(peer)
    rec = fit(student, tiny_loader(), None, Recipe(2, lr=0.05), obj, Run("unit", "dml", "smoke"), runtime=QUIET)
    assert rec["status"] == "complete" and rec["n_params"] == sum(p.numel() for p in student.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, peer.parameters()))  # the peer learned too
    assert {"train_dml", "train_peer_ce", "train_peer_top1"} <= set(rec["history"][-1])
    state = torch.load(Run("unit", "dml", "smoke").checkpoint_path, weights_only=True)
    assert any(k.startswith("peer.") for k in state["objective"])  # the peer is checkpointed for resume


def test_takd_chain_trains_every_link_from_the_previous_network():
    torch.manual_seed(0)
    teacher, assistant, student = tiny_student(), tiny_student(), tiny_student()
    for net in (assistant, student):
        for p in net.parameters():
            p.data.normal_(0, 0.05)
    seen = []

    def make(previous):
        seen.append(previous)
        return KDLoss(0.5, 2.0, teacher=LiveTeacher(previous))

    records = M.takd_chain([teacher, assistant, student], tiny_loader(), None, Recipe(1, lr=0.05), make,
                           runtime=QUIET)
    assert seen == [teacher, assistant] and len(records) == 2
    assert all(r["status"] == "complete" for r in records)
    assert not any(p.requires_grad for p in assistant.parameters())  # frozen once it teaches
    with pytest.raises(ValueError, match="at least one network"):
        M.takd_chain([teacher], tiny_loader(), None, Recipe(1))
    with pytest.raises(ValueError, match="runs"):
        M.takd_chain([teacher, student], tiny_loader(), None, Recipe(1), runs=[None, None])
