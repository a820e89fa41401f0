"""SGMFS with its hyperparameters chosen from the labelled rows alone: k-fold cross-validation.

SGMFS's trade-offs (alpha: row sparsity of W; beta: weight of the shared graph S; and the others of
:class:`~rayapp.select.sgmfs.SGMFS`) depend on the data, and a user labelling a corpus from a few
examples has no held-out labels to tune them on. :class:`SGMFSCV` picks them as scikit-learn's
``*CV`` estimators do, from the training rows only:

1. the labelled rows are split into ``folds`` folds at random (seeded);
2. for every candidate of the grid (the product of its listed values) and every fold, SGMFS is fitted
   on all the training rows with that fold's labels hidden (its rows stay in, unlabelled);
3. ML-kNN is trained on the other labelled rows' ``m`` best features (z-scored over the training
   rows), for m = each of ``fractions`` of the features, and scores the hidden fold with ``metric``
   (:func:`rayapp.select.metrics.multilabel_report`; a loss is minimised);
4. a candidate's CV score is the mean over folds and fractions; the best one (ties: the first in grid
   order) is refitted on every labelled row, and its feature scores are the result.

Cost: ``len(grid) * folds + 1`` SGMFS fits. No row outside ``X`` is seen, so a benchmark's test rows
stay unseen. Errors: an unknown SGMFS argument in the grid or in the fixed arguments, an empty list
of values, a key both fixed and searched, fewer than 2 folds, an unknown metric, and fewer than two
labelled rows per fold (:class:`~rayapp.select.data.MultiLabelDataError`) are refused by name.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any, Optional, Sequence

import numpy as np

from rayapp.select.data import MultiLabelDataError
from rayapp.select.sgmfs import SGMFS, labelled_mask

__all__ = ["SGMFSCV", "DEFAULT_GRID"]

#: alpha (row sparsity) and beta (graph weight), the two trade-offs of SGMFS's objective
DEFAULT_GRID: dict[str, list[Any]] = {"alpha": [0.1, 0.3], "beta": [3.0, 30.0]}


class SGMFSCV:
    """``SGMFSCV(grid, folds).fit(X, Y, labelled)``; then ``best_params_``, ``cv_results_`` (one row per
    candidate: params, mean score, per-fold scores), ``model_`` (the refitted :class:`SGMFS`) and its
    ``scores_`` and ``soft_labels_``. Keyword arguments other than those below are fixed SGMFS
    arguments for every fit. See the module doc."""

    def __init__(self, grid: Optional[dict[str, Sequence[Any]]] = None, folds: int = 3,
                 fractions: Sequence[float] = (0.25, 0.5, 0.75), metric: str = "average_precision",
                 mlknn_k: int = 10, seed: int = 0, **fixed: Any):
        from rayapp.select.metrics import multilabel_report

        grid = dict(DEFAULT_GRID if grid is None else grid)
        known = set(inspect.signature(SGMFS).parameters)
        for where, keys in (("grid", grid), ("fixed arguments", fixed)):
            unknown = sorted(set(keys) - known)
            if unknown:
                raise ValueError(f"SGMFSCV: unknown SGMFS argument(s) {unknown} in the {where}; known: {sorted(known)}")
        empty = sorted(k for k, v in grid.items() if len(list(v)) == 0)
        if empty:
            raise ValueError(f"SGMFSCV: grid key(s) {empty} list no value")
        both = sorted(set(grid) & set(fixed))
        if both:
            raise ValueError(f"SGMFSCV: {both} both fixed and searched (the default grid searches "
                             f"{sorted(DEFAULT_GRID)}; pass a grid without the fixed ones)")
        if folds < 2:
            raise ValueError(f"SGMFSCV: folds must be >= 2, got {folds}")
        if not fractions or not all(0 < f <= 1 for f in fractions):
            raise ValueError(f"SGMFSCV: fractions must be in (0, 1], got {list(fractions)}")
        probe = multilabel_report(np.array([[1, 0]]), np.array([[0.9, 0.1]]), np.array([[1, 0]]))
        if metric not in probe:
            raise ValueError(f"SGMFSCV: unknown metric {metric!r}; known: {sorted(probe)}")
        self.grid, self.folds, self.fractions, self.metric = grid, folds, tuple(fractions), metric
        self.mlknn_k, self.seed, self.fixed = mlknn_k, seed, fixed

    def candidates(self) -> list[dict[str, Any]]:
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(list(self.grid[k]) for k in keys))]

    def fit(self, X: np.ndarray, Y: np.ndarray, labelled) -> "SGMFSCV":
        from rayapp.select.bench import evaluate_selection, feature_counts
        from rayapp.select.metrics import LOWER_IS_BETTER

        X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y)
        n = len(X)
        lab = labelled_mask(labelled, n)
        rows = np.flatnonzero(lab)
        if len(rows) < 2 * self.folds:
            raise MultiLabelDataError(f"SGMFSCV: {self.folds} folds need at least {2 * self.folds} labelled rows "
                                      f"(two per fold), got {len(rows)}")
        fold_rows = np.array_split(np.random.default_rng(self.seed).permutation(rows), self.folds)
        counts = feature_counts(X.shape[1], list(self.fractions))
        sign = -1.0 if self.metric in LOWER_IS_BETTER else 1.0
        everyone = np.arange(n)
        results = []
        for params in self.candidates():
            per_fold = []
            for held in fold_rows:
                fit_lab = lab.copy()
                fit_lab[held] = False
                scores = SGMFS(**self.fixed, **params).fit(X, Y, fit_lab).scores_
                reports = evaluate_selection(X, Y, scores, fit_lab, everyone, np.sort(held), counts, self.mlknn_k)
                per_fold.append(float(np.mean([r[self.metric] for r in reports])))
            results.append({"params": params, "mean": float(np.mean(per_fold)), "folds": per_fold})
        best = max(range(len(results)), key=lambda i: (sign * results[i]["mean"], -i))
        self.cv_results_, self.best_params_ = results, results[best]["params"]
        self.model_ = SGMFS(**self.fixed, **self.best_params_).fit(X, Y, lab)
        self.scores_, self.soft_labels_ = self.model_.scores_, self.model_.soft_labels_
        return self
