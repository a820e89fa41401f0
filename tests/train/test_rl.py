"""GRPO's clipped-std advantage and loss, SEER's LPO and expert weighting."""

import numpy as np
import pytest
import torch

from rayapp.extract.seer import combine_experts, cv_weights, dedup_candidates, helpfulness
from rayapp.train.rl import ADVANTAGES, grpo_advantages, grpo_loss, lambda_weights, lpo_loss, sft_loss


def test_clipped_std_advantage():
    a = grpo_advantages(torch.tensor([[0.49, 0.51]]))
    assert torch.allclose(a, torch.tensor([[-0.1, 0.1]]), atol=1e-6)
    b = grpo_advantages(torch.tensor([[0.0, 1.0], [2.0, 2.0]]))
    assert torch.allclose(b, torch.tensor([[-1.0, 1.0], [0.0, 0.0]]))
    assert ADVANTAGES["grpo"] is grpo_advantages


def test_grpo_loss_values_and_mask():
    logp = torch.log(torch.tensor([[0.5, 0.5, 0.9]]))
    old = logp.clone()
    adv = torch.tensor([2.0])
    mask = torch.tensor([[1, 1, 0]])
    # ratio 1, policy == reference: loss = -A on the masked tokens
    assert grpo_loss(logp, old, logp, adv, mask).item() == pytest.approx(-2.0)
    # tokens outside the mask do not count, whatever their values
    changed = logp.clone()
    changed[0, 2] = -50.0
    assert grpo_loss(changed, old, changed, adv, mask).item() == pytest.approx(-2.0)
    # the ratio is clipped at 1 + 0.2 for a positive advantage
    up = old + torch.log(torch.tensor(1.5))
    assert grpo_loss(up, old, up, adv, mask, clip=0.2).item() == pytest.approx(-2.0 * 1.2)
    # the KL term is >= 0 and zero only when policy == reference
    ref = logp - 0.3
    assert grpo_loss(logp, old, ref, torch.zeros(1), mask, beta=1.0).item() == pytest.approx(np.exp(-0.3) + 0.3 - 1)


def test_sft_loss_is_the_token_mean_nll_over_the_mask():
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.1], [0.8, 0.9, 0.9]]))
    mask = torch.tensor([[1, 1, 0], [0, 1, 0]])
    want = -(np.log(0.5) + np.log(0.25) + np.log(0.9)) / 3
    assert sft_loss(logp, mask).item() == pytest.approx(want, rel=1e-6)
    assert sft_loss(logp, torch.zeros_like(mask)).item() == 0.0  # no target token: no loss, no NaN


def test_lpo_equals_dpo_when_lambda_is_one_and_one_step_lowers_it():
    torch.manual_seed(0)
    pw, pl, rw, rl = torch.randn(4), torch.randn(4), torch.randn(4), torch.randn(4)
    dpo = -torch.nn.functional.logsigmoid(0.1 * ((pw - rw) - (pl - rl))).mean()
    assert torch.allclose(lpo_loss(pw, pl, rw, rl, torch.ones(4), beta=0.1), dpo)
    # a toy pair: one update of a 2-logit policy lowers the loss
    logits = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=1.0)
    ref = torch.log_softmax(torch.zeros(2), -1)

    def loss():
        lp = torch.log_softmax(logits, -1)
        return lpo_loss(lp[:1], lp[1:], ref[:1], ref[1:], torch.tensor([0.7]), beta=1.0)

    before = loss()
    before.backward()
    opt.step()
    assert loss().item() < before.item()


def test_lambda_weights():
    lam = lambda_weights(torch.tensor([0.9]), torch.tensor([0.4]), torch.tensor([1]), torch.tensor([3]))
    assert lam.item() == pytest.approx((0.9 - 0.4) * (1 - 1 / 3))


def test_seer_expert_weighting_and_helpers():
    s = np.array([[0.9, 0.5], [0.1, 0.5], [0.5, 0.5]])  # expert 2 cannot tell the candidates apart
    w = cv_weights(s, tau=0.1)
    assert w.sum() == pytest.approx(1.0) and w[0] > 0.99
    assert np.allclose(combine_experts(s, tau=0.1), s @ w)
    assert helpfulness(-1.0, -1.0) == 0.5 and helpfulness(0.0, -5.0) > 0.99
    assert dedup_candidates(["The cat sat.", "the cat sat", "A dog."]) == ["The cat sat.", "A dog."]


def test_registering_a_name_twice_is_an_error():
    from rayapp.train.rl import register_advantage

    with pytest.raises(ValueError, match="advantage estimator 'grpo' is already registered"):
        register_advantage("grpo")(lambda r: r)
