"""Multi-label metrics (Zhang & Zhou, "A Review on Multi-Label Learning Algorithms", TKDE 2014).

``Y``: (n, c) 0/1 truth; ``scores``: (n, c) real-valued confidences (higher = more relevant);
``P``: (n, c) 0/1 predictions. Ranks are 1-based and pessimistic under ties:
``rank_i(l) = |{l' : scores[i, l'] >= scores[i, l]}|`` (as scikit-learn's ranking metrics).

- Hamming loss: ``mean(Y != P)``.
- One-error: share of rows whose top-scored label (first index on ties) is irrelevant.
- Coverage: ``mean_i max_{l in Y_i} rank_i(l) - 1`` (Mulan's convention, one less than
  scikit-learn's ``coverage_error``).
- Ranking loss: share of (relevant, irrelevant) label pairs with ``score_rel <= score_irr``
  (a tie counts as a mis-ordering), averaged over rows.
- Average precision: ``mean_i 1/|Y_i| sum_{l in Y_i} |{l' in Y_i : rank(l') <= rank(l)}| / rank(l)``.
- Macro-F1 (mean of per-label F1) and micro-F1 (F1 of the pooled counts); a label whose F1 is
  0/0 (no true and no predicted positive) scores 0, as scikit-learn's ``zero_division=0``.

The ranking metrics (one-error, coverage, ranking loss, average precision) skip rows with no
relevant label, and ranking loss also skips rows with no irrelevant one (they are undefined there),
as Mulan does; when no row is left, they raise ``ValueError``. Lower is better for Hamming loss, one-error, coverage and ranking loss.
"""

from __future__ import annotations

import numpy as np

__all__ = ["hamming_loss", "one_error", "coverage", "ranking_loss", "average_precision", "macro_f1", "micro_f1",
           "multilabel_report", "LOWER_IS_BETTER"]

LOWER_IS_BETTER = {"hamming_loss", "one_error", "coverage", "ranking_loss"}


def _check(Y: np.ndarray, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Y, Z = np.asarray(Y), np.asarray(Z)
    if Y.shape != Z.shape or Y.ndim != 2:
        raise ValueError(f"shapes differ or are not 2-D: {Y.shape} vs {Z.shape}")
    return Y.astype(bool), Z


def _ranks(scores: np.ndarray) -> np.ndarray:
    """rank[i, l] = number of labels scored >= scores[i, l] (1-based, pessimistic)."""
    return (scores[:, None, :] >= scores[:, :, None]).sum(axis=2)


def _rows(keep: np.ndarray, metric: str) -> np.ndarray:
    if not keep.any():
        raise ValueError(f"{metric}: no row has the labels it needs (a relevant one, and for ranking loss an irrelevant one)")
    return keep


def hamming_loss(Y, P) -> float:
    Y, P = _check(Y, P)
    return float((Y != P.astype(bool)).mean())


def one_error(Y, scores) -> float:
    Y, s = _check(Y, scores)
    keep = _rows(Y.any(1), "one_error")
    top = np.argmax(s[keep], axis=1)
    return float((~Y[keep][np.arange(keep.sum()), top]).mean())


def coverage(Y, scores) -> float:
    Y, s = _check(Y, scores)
    keep = _rows(Y.any(1), "coverage")
    r = np.where(Y[keep], _ranks(s[keep]), 0)
    return float((r.max(1) - 1).mean())


def ranking_loss(Y, scores) -> float:
    Y, s = _check(Y, scores)
    keep = _rows(Y.any(1) & (~Y).any(1), "ranking_loss")
    Y, s = Y[keep], s[keep]
    bad = (s[:, :, None] <= s[:, None, :]) & Y[:, :, None] & ~Y[:, None, :]  # [i, rel, irr]
    pairs = Y.sum(1) * (~Y).sum(1)
    return float((bad.sum((1, 2)) / pairs).mean())


def average_precision(Y, scores) -> float:
    Y, s = _check(Y, scores)
    keep = _rows(Y.any(1), "average_precision")
    Y, s = Y[keep], s[keep]
    r = _ranks(s)
    # for each relevant l: relevant labels ranked at or above it
    above = ((r[:, None, :] <= r[:, :, None]) & Y[:, None, :]).sum(2)
    prec = np.where(Y, above / r, 0.0)
    return float((prec.sum(1) / Y.sum(1)).mean())


def _f1(tp, fp, fn) -> np.ndarray:
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)


def macro_f1(Y, P) -> float:
    Y, P = _check(Y, P)
    P = P.astype(bool)
    tp, fp, fn = (Y & P).sum(0), (~Y & P).sum(0), (Y & ~P).sum(0)
    return float(_f1(tp, fp, fn).mean())


def micro_f1(Y, P) -> float:
    Y, P = _check(Y, P)
    P = P.astype(bool)
    return float(_f1((Y & P).sum(), (~Y & P).sum(), (Y & ~P).sum()))


def multilabel_report(Y, scores, P) -> dict[str, float]:
    """All seven metrics in one dict."""
    return {"hamming_loss": hamming_loss(Y, P), "ranking_loss": ranking_loss(Y, scores),
            "one_error": one_error(Y, scores), "coverage": coverage(Y, scores),
            "average_precision": average_precision(Y, scores), "macro_f1": macro_f1(Y, P),
            "micro_f1": micro_f1(Y, P)}
