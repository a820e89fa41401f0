"""SEER's expert scoring (arXiv 2410.11315): three experts score evidence candidates, combined by
smoothed coefficient-of-variation weights."""

from __future__ import annotations

import numpy as np

__all__ = ["cv_weights", "combine_experts", "helpfulness", "dedup_candidates"]


def cv_weights(scores: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """alpha = softmax(c / tau) with c_k = sigma_k / mu_k, the coefficient of variation of expert k's
    scores over the candidates (``scores``: [candidates, experts]); an expert that separates the
    candidates more gets more weight."""
    s = np.asarray(scores, dtype=np.float64)
    c = s.std(axis=0) / np.maximum(np.abs(s.mean(axis=0)), 1e-8)
    z = np.exp((c - c.max()) / tau)
    return z / z.sum()


def combine_experts(scores: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """s = sum_k alpha_k s_k per candidate."""
    return np.asarray(scores, dtype=np.float64) @ cv_weights(scores, tau)


def helpfulness(logp_with_evidence: float, logp_without: float) -> float:
    """s_h = sigmoid(log p(a | q + e) - log p(a | q)) under the generator."""
    return float(1 / (1 + np.exp(-(logp_with_evidence - logp_without))))


def dedup_candidates(candidates: list[str]) -> list[str]:
    """Drop candidates whose normalised word sequence was seen before (first kept, order kept)."""
    from rayapp.extract.rewards import normalize_answer

    seen, out = set(), []
    for c in candidates:
        key = normalize_answer(c)
        if key and key not in seen:
            seen.add(key)
            out.append(c)
    return out
