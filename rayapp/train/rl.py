"""Preference and policy-gradient objectives for the evidence extractors (issue 7).

- Advantage estimators by name (``ADVANTAGES``, as verl registers them): ``grpo`` (LEAR's group
  normalisation with a clipped standard deviation).
- :func:`grpo_loss`: PPO-clipped surrogate plus a KL penalty to the reference policy, averaged over
  the tokens a mask selects (LEAR: only the tokens of r, e and o_f).
- :func:`lpo_loss`: SEER's lambda-weighted DPO.
- :func:`sft_loss`: the token-mean negative log-likelihood of LEAR's cold-start stage.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from rayapp._internal.registry import registrar

__all__ = ["ADVANTAGES", "register_advantage", "grpo_advantages", "grpo_loss", "lpo_loss", "lambda_weights", "sft_loss"]

ADVANTAGES: dict[str, Callable[..., torch.Tensor]] = {}


register_advantage = registrar(ADVANTAGES, "advantage estimator")


@register_advantage("grpo")
def grpo_advantages(rewards: torch.Tensor, min_std: float = 0.1) -> torch.Tensor:
    """A_i = (R_i - mean(R)) / max(std(R), min_std) within each group (rows of ``rewards``,
    shape [groups, samples]; population std). LEAR clips the std at 0.1 so that near-equal
    rewards are not blown up: R = {0.49, 0.51} gives A = {-0.1, +0.1}, not {-1, +1}."""
    r = rewards.float()
    mean = r.mean(dim=-1, keepdim=True)
    std = r.std(dim=-1, unbiased=False, keepdim=True)
    return (r - mean) / std.clamp_min(min_std)


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, clip: float = 0.2, beta: float = 1e-2) -> torch.Tensor:
    """GRPO (DeepSeekMath; LEAR's setting clip 0.2, beta 1e-2), per token t of sample i:

        rho = exp(logp - old_logp)
        L_t = -min(rho * A_i, clip(rho, 1 - clip, 1 + clip) * A_i) + beta * KL_t
        KL_t = exp(ref_logp - logp) - (ref_logp - logp) - 1     (the k3 estimator, >= 0)

    averaged over the tokens where ``mask`` is 1. ``logp``/``old_logp``/``ref_logp``/``mask``:
    [batch, tokens]; ``advantages``: [batch]."""
    a = advantages.unsqueeze(-1)
    ratio = torch.exp(logp - old_logp)
    surrogate = -torch.minimum(ratio * a, ratio.clamp(1 - clip, 1 + clip) * a)
    diff = ref_logp - logp
    kl = torch.exp(diff) - diff - 1
    m = mask.float()
    return ((surrogate + beta * kl) * m).sum() / m.sum().clamp_min(1.0)


def lambda_weights(scores_w: torch.Tensor, scores_l: torch.Tensor, rank_w: torch.Tensor,
                   rank_l: torch.Tensor) -> torch.Tensor:
    """SEER's pair weight lambda_wl = s_w dMRR_wl + s_l dMRR_lw, with dMRR_wl = 1/rank_w - 1/rank_l
    (the reciprocal-rank gain of w over l among the candidates, ranks 1-based by score) and
    dMRR_lw = -dMRR_wl; so lambda_wl = (s_w - s_l)(1/rank_w - 1/rank_l) >= 0 for s_w > s_l."""
    d = 1.0 / rank_w.float() - 1.0 / rank_l.float()
    return scores_w * d + scores_l * (-d)


def lpo_loss(policy_w: torch.Tensor, policy_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor,
             lambdas: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """Lambda-weighted DPO (SEER, arXiv 2410.11315):

        L = -E[ lambda_wl * log sigmoid(beta * ((log pi(e_w) - log ref(e_w)) - (log pi(e_l) - log ref(e_l)))) ]

    with sequence log-probabilities ([pairs]); lambda = 1 is DPO (Rafailov et al., 2023)."""
    margin = beta * ((policy_w - ref_w) - (policy_l - ref_l))
    return -(lambdas * F.logsigmoid(margin)).mean()


def sft_loss(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Supervised fine-tuning (the cold start before RL, DeepSeek-R1 arXiv 2501.12948):

        L = -sum_{i,t} mask_it * log pi(y_it | x_i, y_i<t) / sum_{i,t} mask_it

    the negative log-likelihood of the target tokens, averaged over the tokens ``mask`` selects
    (``logp``, ``mask``: [batch, tokens])."""
    m = mask.float()
    return -(logp * m).sum() / m.sum().clamp_min(1.0)
