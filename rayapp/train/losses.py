"""Contrastive losses of the KaLM-Embedding recipe, one function each, plus a registry by name.

Shapes: ``q`` (B, d) query vectors, ``p`` (B, d) their positives, ``negs`` (B, K, d) hard
negatives (K may be 0), all L2-normalised, so a dot product is the cosine similarity s(., .).
Under Ray Train every worker passes its local rows; with ``gather=True`` the positives and
negatives of every worker are all-gathered *with gradient* (``torch.distributed.nn.all_gather``),
so each query is contrasted with the whole global batch (cross-device negatives).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from rayapp._internal.registry import registrar

__all__ = [
    "LOSSES", "register_loss", "contrastive_logits", "info_nce_loss", "focal_info_nce_loss",
    "mix_hard_negatives", "matryoshka_loss", "kl_distill_loss", "listwise_rerank_loss",
]

LossFn = Callable[..., torch.Tensor]
LOSSES: dict[str, LossFn] = {}


#: Decorator: make a loss selectable by ``name`` in training configs (``loss: focal``).
register_loss = registrar(LOSSES, "loss")


def _gather(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All-gather ``x`` over the default process group with gradient; returns (concat, offset of
    this rank's rows). Without a process group, ``x`` itself."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    from torch.distributed.nn.functional import all_gather

    parts = all_gather(x.contiguous())
    return torch.cat(parts, dim=0), dist.get_rank() * x.shape[0]


def contrastive_logits(q: torch.Tensor, p: torch.Tensor, negs: Optional[torch.Tensor], tau: float,
                       gather: bool = True, extra: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, C) and the positive's column (B,) for the InfoNCE family.

    Columns: every positive of the (global) batch, then every hard negative of the (global) batch,
    then ``extra`` (B, M, d) per-query candidates (the synthetic mixed negatives). Each entry is
    s(q_i, x) / tau."""
    p_all, offset = _gather(p) if gather else (p, 0)
    cols = [q @ p_all.T]
    if negs is not None and negs.shape[1] > 0:
        n_all = _gather(negs.reshape(-1, negs.shape[-1]))[0] if gather else negs.reshape(-1, negs.shape[-1])
        cols.append(q @ n_all.T)
    if extra is not None and extra.shape[1] > 0:
        cols.append(torch.einsum("bd,bmd->bm", q, extra))
    labels = torch.arange(q.shape[0], device=q.device) + offset
    return torch.cat(cols, dim=1) / tau, labels


@register_loss("infonce")
def info_nce_loss(q, p, negs=None, *, tau: float = 0.02, gather: bool = True, extra=None, **_) -> torch.Tensor:
    """InfoNCE with in-batch, cross-device and hard negatives (KaLM-Embedding V1, Eq. 1; tau 0.01-0.02).

    L = -(1/N) sum_i log( e^{s(q_i,p_i+)/tau} / Z_i ),
    Z_i = e^{s(q_i,p_i+)/tau} + sum_{j!=i} e^{s(q_i,p_j+)/tau} + sum_j sum_k e^{s(q_i,p-_{j,k})/tau},
    with j over the global batch (all workers) and k over each row's hard negatives."""
    logits, labels = contrastive_logits(q, p, negs, tau, gather, extra)
    return F.cross_entropy(logits, labels)


@register_loss("focal")
def focal_info_nce_loss(q, p, negs=None, *, tau: float = 0.02, gamma: float = 0.5, gather: bool = True,
                        extra=None, **_) -> torch.Tensor:
    """Focal-reweighted InfoNCE (KaLM-Embedding V2, focal-style sample reweighting; gamma 0.5).

    w_i = (1 - e^{s(q_i,p_i+)/tau} / Z_i)^gamma,  L = -(1/N) sum_i w_i log(e^{s(q_i,p_i+)/tau} / Z_i).
    Easy samples (positive already far ahead, ratio near 1) get little weight. The weight is part of
    the graph, as in focal loss (Lin et al., 2017). gamma = 0 gives exactly :func:`info_nce_loss`."""
    logits, labels = contrastive_logits(q, p, negs, tau, gather, extra)
    log_prob = torch.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    if gamma == 0:
        return -log_prob.mean()
    w = (1 - log_prob.exp()).clamp_min(0) ** gamma
    return -(w * log_prob).mean()


def mix_hard_negatives(negs: torch.Tensor, count: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Online hard-negative mixing (KaLM-Embedding V2): ``count`` synthetic negatives per query,
    h = lambda p-_a + (1 - lambda) p-_b with a != b drawn from the query's own hard negatives and
    lambda ~ Beta(2, 2), re-normalised to unit length. Returns (B, count, d).

    The synthetic negatives are **detached**: they enlarge Z_i (harder denominators) but no gradient
    flows into the negatives they were mixed from (as in MoCHi, Kalantidis et al., 2020)."""
    b, k, d = negs.shape
    if k < 2 or count <= 0:
        return negs.new_zeros((b, 0, d))
    src = negs.detach()
    a = torch.randint(0, k, (b, count), generator=generator, device=negs.device)
    shift = torch.randint(1, k, (b, count), generator=generator, device=negs.device)
    c = (a + shift) % k  # a different negative than a
    # Beta(2, 2) is the law of the median of three uniforms: exact, and seeded by ``generator``.
    lam = torch.rand((b, count, 3), generator=generator, device=negs.device).median(dim=-1).values[..., None]
    rows = torch.arange(b, device=negs.device)[:, None]
    h = lam * src[rows, a] + (1 - lam) * src[rows, c]
    return F.normalize(h, dim=-1)


def matryoshka_loss(loss_fn: LossFn, q, p, negs, dims: list[int], weights: list[float], extra=None,
                    **kwargs) -> torch.Tensor:
    """Matryoshka representation learning (Kusupati et al., 2022; KaLM-Embedding V1 weights
    1/0.3/0.2/0.1/0.1): sum_m w_m * L(trunc_m(q), trunc_m(p), trunc_m(negs)), where trunc_m keeps the
    first ``dims[m]`` coordinates and re-normalises to unit length."""
    if len(dims) != len(weights):
        raise ValueError(f"matryoshka: {len(dims)} dims but {len(weights)} weights")
    total = q.new_zeros(())
    for dim, w in zip(dims, weights):
        cut = lambda x: None if x is None else F.normalize(x[..., :dim], dim=-1)  # noqa: E731
        total = total + w * loss_fn(cut(q), cut(p), cut(negs), extra=cut(extra), **kwargs)
    return total


def kl_distill_loss(student: torch.Tensor, teacher: torch.Tensor, tau_s: float = 0.02,
                    tau_t: float = 1.0) -> torch.Tensor:
    """Distillation from a teacher's soft scores (as in later KaLM-Embedding versions, RocketQAv2):
    L = (1/N) sum_i KL( softmax(t_i / tau_t) || softmax(s_i / tau_s) ) over each query's candidate
    list (positive + hard negatives); ``student`` and ``teacher`` are (B, C) similarity scores."""
    return F.kl_div(torch.log_softmax(student / tau_s, dim=1), torch.log_softmax(teacher / tau_t, dim=1),
                    log_target=True, reduction="batchmean")


def listwise_rerank_loss(scores: torch.Tensor) -> torch.Tensor:
    """Cross-encoder training loss over groups (localized contrastive estimation, Gao et al. 2021,
    "Rethink Training of BERT Rerankers in Multi-Stage Retrieval Pipelines"): each row of ``scores``
    (B, 1 + k) holds the logits of one query's positive (column 0) and k hard negatives;
    L = -(1/B) sum_i log( e^{s_i0} / sum_j e^{s_ij} )."""
    return F.cross_entropy(scores, torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device))

