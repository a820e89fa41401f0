"""ML-kNN (Zhang & Zhou, "ML-KNN: A lazy learning approach to multi-label learning", PR 2007).

For label l, with ``C_l(x)`` the number of x's k nearest training neighbours that carry l:

    prior      P(H1_l)          = (s + sum_i y_il) / (2 s + n)
    likelihood P(C = j | H1_l)  = (s + c_l[j]) / (s (k + 1) + sum_j' c_l[j'])
               P(C = j | H0_l)  = (s + c'_l[j]) / (s (k + 1) + sum_j' c'_l[j'])

where ``c_l[j]`` (``c'_l[j]``) counts training rows that carry (lack) l and have j neighbours with l,
their own row excluded. The score is the posterior ``P(H1 | C) = P(H1) P(C|H1) / (P(H1) P(C|H1) +
P(H0) P(C|H0))``; l is predicted when it is above 1/2. Euclidean neighbours, exact (scikit-learn).
"""

from __future__ import annotations

import numpy as np

__all__ = ["MLkNN"]


class MLkNN:
    def __init__(self, k: int = 10, s: float = 1.0):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not s > 0:
            raise ValueError(f"the smoothing s must be > 0, got {s}")
        self.k, self.s = k, s

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "MLkNN":
        from sklearn.neighbors import NearestNeighbors

        X, Y = np.asarray(X, float), np.asarray(Y).astype(np.int64)
        n, c = Y.shape
        if n < 2:
            raise ValueError("ML-kNN needs at least 2 training rows")
        self.k_ = min(self.k, n - 1)
        self._nn = NearestNeighbors(n_neighbors=self.k_ + 1).fit(X)
        self._Y = Y
        idx = self._nn.kneighbors(X, return_distance=False)
        idx = np.array([[j for j in row if j != i][: self.k_] for i, row in enumerate(idx)])  # drop self
        counts = Y[idx].sum(1)  # (n, c) in [0, k]
        k1, s = self.k_ + 1, self.s
        self.prior_ = (s + Y.sum(0)) / (2 * s + n)
        c1, c0 = np.zeros((c, k1)), np.zeros((c, k1))
        for label in range(c):
            c1[label] = np.bincount(counts[Y[:, label] == 1, label], minlength=k1)
            c0[label] = np.bincount(counts[Y[:, label] == 0, label], minlength=k1)
        self.like1_ = (s + c1) / (s * k1 + c1.sum(1, keepdims=True))
        self.like0_ = (s + c0) / (s * k1 + c0.sum(1, keepdims=True))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        idx = self._nn.kneighbors(np.asarray(X, float), n_neighbors=self.k_, return_distance=False)
        counts = self._Y[idx].sum(1)  # (m, c)
        lab = np.arange(counts.shape[1])
        p1 = self.prior_ * self.like1_[lab, counts]
        p0 = (1 - self.prior_) * self.like0_[lab, counts]
        return p1 / (p1 + p0)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X) > 0.5).astype(np.int8)
