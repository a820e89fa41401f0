"""Full-ranking metrics: every item is a candidate (no sampled negatives)."""

from __future__ import annotations

import numpy as np

__all__ = ["target_ranks", "full_ranking_metrics"]


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target among all items (column 0, padding, never counts; ties are
    broken against the target: an item scoring the same ranks above it)."""
    s = np.asarray(scores, dtype=np.float64).copy()
    s[:, 0] = -np.inf
    t = s[np.arange(len(targets)), targets][:, None]
    return (s >= t).sum(axis=1) - 1


def full_ranking_metrics(ranks: np.ndarray, ks=(5, 10, 20)) -> dict[str, float]:
    """HR@k = share of targets ranked in the top k; NDCG@k = mean of 1 / log2(rank + 2) over targets
    in the top k (one relevant item per user, so IDCG = 1)."""
    r = np.asarray(ranks)
    out = {}
    for k in ks:
        hit = r < k
        out[f"hr@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(r + 2), 0.0).mean())
    return out
