"""Each loss against values computed by hand from its formula."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rayapp.train.losses import (LOSSES, focal_info_nce_loss, info_nce_loss, kl_distill_loss, matryoshka_loss,
                                 mix_hard_negatives, register_loss)


def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float64), dim=-1)


Q = unit([1.0, 0.0], [0.0, 1.0])
P = unit([0.8, 0.6], [0.6, 0.8])
N = torch.stack([unit([0.0, 1.0], [-1.0, 0.0]), unit([1.0, 1.0], [1.0, -1.0])])  # (B=2, K=2, d=2)


def hand_terms(tau):
    """log(e^{s+/tau} / Z_i) for each query, from the formula in the docstring."""
    out = []
    for i in range(2):
        pos = math.exp(float(Q[i] @ P[i]) / tau)
        z = pos + sum(math.exp(float(Q[i] @ P[j]) / tau) for j in range(2) if j != i)
        z += sum(math.exp(float(Q[i] @ N[j, k]) / tau) for j in range(2) for k in range(2))
        out.append(math.log(pos / z))
    return out


def test_info_nce_matches_the_formula():
    tau = 0.5
    want = -np.mean(hand_terms(tau))
    assert float(info_nce_loss(Q, P, N, tau=tau, gather=False)) == pytest.approx(want, rel=1e-12)
    # without hard negatives only the in-batch positives are in Z
    z0 = [math.exp(float(Q[0] @ P[j]) / tau) for j in range(2)]
    z1 = [math.exp(float(Q[1] @ P[j]) / tau) for j in range(2)]
    want_inbatch = -0.5 * (math.log(z0[0] / sum(z0)) + math.log(z1[1] / sum(z1)))
    assert float(info_nce_loss(Q, P, None, tau=tau, gather=False)) == pytest.approx(want_inbatch, rel=1e-12)


def test_focal_weights_and_gamma_zero():
    tau, gamma = 0.5, 0.5
    terms = hand_terms(tau)
    want = -np.mean([(1 - math.exp(t)) ** gamma * t for t in terms])
    assert float(focal_info_nce_loss(Q, P, N, tau=tau, gamma=gamma, gather=False)) == pytest.approx(want, rel=1e-12)
    assert float(focal_info_nce_loss(Q, P, N, tau=tau, gamma=0.0, gather=False)) == float(
        info_nce_loss(Q, P, N, tau=tau, gather=False))
    # focal down-weights: the loss is smaller than plain InfoNCE
    assert float(focal_info_nce_loss(Q, P, N, tau=tau, gather=False)) < float(info_nce_loss(Q, P, N, tau=tau, gather=False))


def test_mixed_negatives_are_convex_unit_and_detached():
    negs = F.normalize(torch.randn(4, 5, 8, dtype=torch.float64), dim=-1).requires_grad_()
    g = torch.Generator().manual_seed(0)
    h = mix_hard_negatives(negs, count=3, generator=g)
    assert h.shape == (4, 3, 8) and not h.requires_grad
    assert torch.allclose(h.norm(dim=-1), torch.ones(4, 3, dtype=torch.float64))
    # every synthetic negative lies in the span of two of its own query's negatives
    for b in range(4):
        for m in range(3):
            sol = torch.linalg.lstsq(negs[b].detach().T, h[b, m]).solution
            assert (sol.abs() > 1e-8).sum() <= 2
    assert mix_hard_negatives(negs[:, :1], count=3).shape == (4, 0, 8)  # needs two negatives to mix
    # added to Z, they make the loss larger
    q, p = F.normalize(torch.randn(4, 8, dtype=torch.float64), dim=-1), F.normalize(torch.randn(4, 8, dtype=torch.float64), dim=-1)
    assert float(info_nce_loss(q, p, negs, tau=0.1, gather=False, extra=h)) > float(info_nce_loss(q, p, negs, tau=0.1, gather=False))
    lam = torch.rand((20000, 1, 3), generator=g).median(dim=-1).values
    assert float(lam.mean()) == pytest.approx(0.5, abs=0.01) and float(lam.var()) == pytest.approx(0.05, abs=0.005)  # Beta(2,2)


def test_matryoshka_sums_weighted_truncated_losses():
    q, p = F.normalize(torch.randn(3, 6, dtype=torch.float64), dim=-1), F.normalize(torch.randn(3, 6, dtype=torch.float64), dim=-1)
    got = matryoshka_loss(info_nce_loss, q, p, None, dims=[6, 4, 2], weights=[1.0, 0.3, 0.2], tau=0.1, gather=False)
    want = sum(w * info_nce_loss(F.normalize(q[:, :d], dim=-1), F.normalize(p[:, :d], dim=-1), None, tau=0.1, gather=False)
               for d, w in [(6, 1.0), (4, 0.3), (2, 0.2)])
    assert float(got) == pytest.approx(float(want), rel=1e-12)
    with pytest.raises(ValueError, match="3 dims but 2 weights"):
        matryoshka_loss(info_nce_loss, q, p, None, dims=[6, 4, 2], weights=[1.0, 0.3])


def test_kl_distill_is_zero_when_student_matches_teacher():
    t = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.8, 0.5]], dtype=torch.float64)
    assert float(kl_distill_loss(t * 0.02, t, tau_s=0.02, tau_t=1.0)) == pytest.approx(0.0, abs=1e-12)
    s = torch.tensor([[0.1, 0.9, 0.3], [0.2, 0.8, 0.5]], dtype=torch.float64)
    pt, ls = torch.softmax(t, 1), torch.log_softmax(s / 0.5, 1)
    want = float((pt * (pt.log() - ls)).sum(1).mean())
    assert float(kl_distill_loss(s, t, tau_s=0.5)) == pytest.approx(want, rel=1e-12)


def test_registry():
    assert LOSSES["infonce"] is info_nce_loss and LOSSES["focal"] is focal_info_nce_loss
    with pytest.raises(ValueError, match="already registered"):
        register_loss("focal")(lambda *a, **k: None)


def test_listwise_rerank_loss_hand_computed():
    from rayapp.train.losses import listwise_rerank_loss

    s = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    expect = -(math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(1))) + math.log(1 / 3)) / 2
    assert float(listwise_rerank_loss(s)) == pytest.approx(expect, rel=1e-6)
