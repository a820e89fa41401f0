"""Feature selectors behind one interface, in a registry users pick from by name.

A selector is ``fn(X, Y, labelled, *, seed, **params) -> scores`` with ``X`` (n x d) the training
rows (labelled and unlabelled), ``Y`` (n x c) whose unlabelled rows are ignored, ``labelled`` a
boolean mask; ``scores`` (d,) ranks the features, higher = better. :func:`top_features` turns scores
into the indices of the m best (ties broken by the lower index). Supervised selectors use only the
labelled rows, unsupervised ones all rows, SGMFS both.

Baselines: ``all`` (every feature), ``random``, ``variance``, ``laplacian`` (Laplacian score, He,
Cai & Niyogi, NIPS 2005), ``mutual_info`` (the sum over labels of the per-label mutual information,
scikit-learn's kNN estimator) and ``rfs`` (robust feature selection, Nie et al., NIPS 2010).
Proposed: ``sgmfs`` (fixed hyperparameters) and ``sgmfs_cv`` (chosen by cross-validation on the
labelled rows, :mod:`rayapp.select.tune`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from rayapp._internal.registry import registrar
from rayapp.select.sgmfs import SGMFS, labelled_mask, standardize

__all__ = ["SELECTORS", "register_selector", "select_scores", "top_features", "laplacian_score", "rfs_weights"]

Selector = Callable[..., np.ndarray]
SELECTORS: dict[str, Selector] = {}
register_selector = registrar(SELECTORS, "feature selector")


def select_scores(name: str, X: np.ndarray, Y: np.ndarray, labelled, *, seed: int = 0, **params) -> np.ndarray:
    """Scores from the selector registered as ``name``."""
    if name not in SELECTORS:
        raise KeyError(f"unknown feature selector {name!r}; known: {sorted(SELECTORS)}")
    X = np.asarray(X, dtype=np.float64)
    return np.asarray(SELECTORS[name](X, np.asarray(Y), labelled_mask(labelled, len(X)), seed=seed, **params), float)


def top_features(scores: np.ndarray, m: int) -> np.ndarray:
    """Indices of the ``m`` highest scores (stable: ties keep the lower index first)."""
    if not 1 <= m <= len(scores):
        raise ValueError(f"m must be in [1, {len(scores)}], got {m}")
    return np.argsort(-np.asarray(scores), kind="stable")[:m]


@register_selector("all")
def _all(X, Y, lab, *, seed):
    """Every feature (equal scores: any m keeps the first m; the sweep evaluates it at m = d)."""
    return np.zeros(X.shape[1])


@register_selector("random")
def _random(X, Y, lab, *, seed):
    return np.random.default_rng(seed).random(X.shape[1])


@register_selector("variance")
def _variance(X, Y, lab, *, seed):
    """Raw (unstandardised) variance over all training rows."""
    return X.var(0)


def laplacian_score(X: np.ndarray, k: int = 5) -> np.ndarray:
    """He et al. (2005), on z-scored features: on a kNN heat-kernel graph ``S_ij = exp(-||x_i - x_j||^2 / t)``
    (t = mean squared neighbour distance, symmetrised), ``D = diag(S 1)``, ``L = D - S``, feature r with
    ``f~ = f - (f^T D 1 / 1^T D 1) 1`` scores ``L_r = f~^T L f~ / f~^T D f~`` (lower = better; a
    constant feature, 0/0, gets +inf)."""
    from sklearn.neighbors import NearestNeighbors

    Xz, _, _ = standardize(X)
    k = min(k, len(X) - 1)
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(Xz).kneighbors(Xz)
    dist, idx = dist[:, 1:] ** 2, idx[:, 1:]
    t = max(dist.mean(), 1e-12)
    n = len(X)
    S = np.zeros((n, n))
    S[np.repeat(np.arange(n), k), idx.ravel()] = np.exp(-dist.ravel() / t)
    S = np.maximum(S, S.T)
    deg = S.sum(1)
    f = Xz - (deg @ Xz) / deg.sum()  # z-scored, so the score does not depend on a feature's scale
    num = np.einsum("ir,ir->r", f, deg[:, None] * f) - np.einsum("ir,ir->r", f, S @ f)
    den = np.einsum("ir,ir->r", f, deg[:, None] * f)
    return np.where(den > 1e-9 * deg.sum(), num / np.maximum(den, 1e-300), np.inf)


@register_selector("laplacian")
def _laplacian(X, Y, lab, *, seed, k: int = 5):
    return -laplacian_score(X, k=k)


@register_selector("mutual_info")
def _mutual_info(X, Y, lab, *, seed, n_neighbors: int = 3):
    from sklearn.feature_selection import mutual_info_classif

    XL, YL = X[lab], Y[lab]
    total = np.zeros(X.shape[1])
    for j in range(YL.shape[1]):
        if len(np.unique(YL[:, j])) > 1:  # a label constant on the labelled rows carries no information
            total += mutual_info_classif(XL, YL[:, j], n_neighbors=n_neighbors, random_state=seed)
    return total


def rfs_weights(X: np.ndarray, Y: np.ndarray, gamma: float = 1.0, iters: int = 50, eps: float = 1e-8) -> np.ndarray:
    """RFS (Nie et al., NIPS 2010): ``min_W ||X W - Y||_{2,1} + gamma ||W||_{2,1}`` by iterative
    reweighting: ``W = (X^T D1 X + gamma D2)^{-1} X^T D1 Y`` with ``D1_ii = 1 / (2 ||(XW - Y)_i||)``,
    ``D2_jj = 1 / (2 ||w_j||)`` (each smoothed by eps). Returns W (d x c)."""
    d = X.shape[1]
    W = np.linalg.solve(X.T @ X + gamma * np.eye(d), X.T @ Y)
    for _ in range(iters):
        d1 = 1.0 / (2.0 * np.sqrt(np.sum((X @ W - Y) ** 2, 1) + eps))
        d2 = 1.0 / (2.0 * np.sqrt(np.sum(W**2, 1) + eps))
        W = np.linalg.solve((X.T * d1) @ X + gamma * np.diag(d2), (X.T * d1) @ Y)
    return W


@register_selector("rfs")
def _rfs(X, Y, lab, *, seed, gamma: float = 1.0, iters: int = 50):
    Xz, _, _ = standardize(X)
    W = rfs_weights(Xz[lab], Y[lab].astype(float), gamma=gamma, iters=iters)
    return np.sqrt(np.sum(W**2, 1))


@register_selector("sgmfs")
def _sgmfs(X, Y, lab, *, seed, **params):
    """SGMFS (see :mod:`rayapp.select.sgmfs`); params go to :class:`SGMFS`."""
    return SGMFS(**params).fit(X, Y, lab).scores_


@register_selector("sgmfs_cv")
def _sgmfs_cv(X, Y, lab, *, seed, **params):
    """SGMFS with alpha and beta (or a given ``grid``) picked by cross-validation on the labelled rows
    (:class:`rayapp.select.tune.SGMFSCV`; its folds are drawn with ``seed``)."""
    from rayapp.select.tune import SGMFSCV

    return SGMFSCV(seed=seed, **params).fit(X, Y, lab).scores_
