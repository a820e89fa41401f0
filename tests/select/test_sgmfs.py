import warnings

import numpy as np
import pytest

from rayapp.select.data import MultiLabelDataError
from rayapp.select.sgmfs import SGMFS, knn_graph, project_rows_to_simplex


def planted(n=300, informative=10, copies=2, seed=0):
    """make_multilabel_classification's count features (informative) next to ``copies`` row-shuffled
    copies of them (each noise column has an informative column's marginal and no label signal)."""
    from sklearn.datasets import make_multilabel_classification

    X, Y = make_multilabel_classification(n_samples=n, n_features=informative, n_classes=5, n_labels=2,
                                          length=200, random_state=seed)
    rng = np.random.default_rng(seed)
    noise_cols = np.hstack([rng.permuted(X, axis=0) for _ in range(copies)])
    labelled = np.zeros(n, bool)
    labelled[rng.permutation(n)[: n // 5]] = True  # 20 %
    return np.hstack([X, noise_cols]), Y, labelled


@pytest.fixture(scope="module")
def fitted():
    X, Y, lab = planted()
    return X, Y, lab, SGMFS(max_iter=30).fit(X, Y, lab)


def test_objective_never_increases(fitted):
    *_, model = fitted
    obj = np.array(model.objective_)
    assert len(obj) >= 10 and np.isfinite(obj).all()
    assert (np.diff(obj) <= 1e-10 * np.abs(obj[:-1])).all(), np.diff(obj).max()
    assert obj[-1] < obj[0]


def test_planted_features_rank_at_the_top(fitted):
    *_, model = fitted
    top10 = np.argsort(-model.scores_)[:10]
    assert (top10 < 10).sum() >= 8, top10  # chance: 10/3


def test_soft_labels_keep_the_labelled_rows_and_stay_in_the_box(fitted):
    X, Y, lab, model = fitted
    F = model.soft_labels_
    np.testing.assert_array_equal(F[lab], Y[lab])
    assert F.min() >= 0 and F.max() <= 1
    # propagated soft labels rank the unlabelled rows' true labels better than the label prior does
    from rayapp.select.metrics import average_precision

    prior = np.tile(Y[lab].mean(0), ((~lab).sum(), 1)) + 1e-9 * np.arange(Y.shape[1])
    assert average_precision(Y[~lab], F[~lab]) > average_precision(Y[~lab], prior) + 0.05
    P = model.predict_proba(X[:5])
    assert P.shape == (5, Y.shape[1]) and P.min() >= 0 and P.max() <= 1
    with pytest.raises(MultiLabelDataError, match="X has 3 features, the fit had 30"):
        model.predict_proba(X[:5, :3])
    # the intercept keeps soft labels on the labels' scale: their mean tracks the label prior
    np.testing.assert_allclose(F[~lab].mean(0), Y[lab].mean(0), atol=0.15)
    thresholded = F[~lab] >= 0.5
    assert thresholded.any(0).all()  # every label gets predicted for some unlabelled row


def test_graph_is_a_sparse_reconstruction(fitted):
    *_, model = fitted
    S = model.graph_
    np.testing.assert_allclose(S.sum(1), 1.0)
    assert (S >= 0).all() and np.all(np.diag(S) == 0)
    assert (S > 0).mean() < 0.5


def test_simplex_projection_and_knn_init():
    rng = np.random.default_rng(1)
    V = rng.normal(size=(6, 6))
    P = project_rows_to_simplex(V)
    np.testing.assert_allclose(P.sum(1), 1.0)
    assert (P >= 0).all() and np.all(np.diag(P) == 0)
    # it is the nearest such point: no feasible random point is closer
    for _ in range(200):
        Q = project_rows_to_simplex(P + rng.normal(0, 0.3, P.shape))
        assert np.sum((V - P) ** 2) <= np.sum((V - Q) ** 2) + 1e-9
    # only the largest candidates of a row are sorted: rows whose support is wider than the candidates
    # (dense rows) fall back to a whole-row sort; both give the same point as a whole-row projection
    n = 40
    V = np.abs(rng.normal(size=(n, n))) * (rng.random((n, n)) < 0.2)
    V[:5] = rng.normal(0.0, 1e-3, (5, n)) + 1.0 / n  # near-uniform rows: support ~ n - 1 > candidates
    whole = project_rows_to_simplex(V, candidates=n)
    assert ((whole > 0).sum(1)[:5] > 4).all() and ((whole > 0).sum(1)[5:] <= 4).any()
    np.testing.assert_allclose(project_rows_to_simplex(V, candidates=4), whole, atol=1e-12)
    np.testing.assert_allclose(whole.sum(1), 1.0)
    G = knn_graph(np.arange(6.0)[:, None], 2)
    np.testing.assert_allclose(G[0], [0, 0.5, 0.5, 0, 0, 0])


def test_bad_input_is_a_clear_error():
    X, Y, lab = planted(n=60)
    Xn = X.copy()
    Xn[3, 4] = np.nan
    with pytest.raises(MultiLabelDataError, match=r"X\[3, 4\] is nan"):
        SGMFS().fit(Xn, Y, lab)
    with pytest.raises(MultiLabelDataError, match="no labelled row"):
        SGMFS().fit(X, Y, np.zeros(len(X), bool))
    with pytest.raises(MultiLabelDataError, match="subspace_dim must be in"):
        SGMFS().fit(X, Y[:, :1], lab)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        SGMFS(alpha=0.0)
    with pytest.raises(MultiLabelDataError, match="at least 2 rows"):
        SGMFS().fit(X[:1], Y[:1], [0])
    with pytest.raises(MultiLabelDataError, match="row index 60 is outside"):
        SGMFS().fit(X, Y, [0, 60])
    with pytest.raises(MultiLabelDataError, match="boolean mask or integer row indices"):
        SGMFS().fit(X, Y, [0.5, 1.0])


def test_constant_feature_ranks_last_and_empty_label_warns():
    X, Y, lab = planted(n=80, copies=1)
    X[:, 2] = 7.0  # constant (an otherwise informative column)
    Y = Y.copy()
    Y[lab, 4] = 0  # no labelled positive for label 4
    with pytest.warns(UserWarning, match=r"label column\(s\) \[4\] have no positive"):
        model = SGMFS(max_iter=10).fit(X, Y, lab)
    assert model.scores_[2] == pytest.approx(0.0, abs=1e-6) and np.argsort(-model.scores_)[-1] == 2
    assert np.isfinite(model.objective_).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SGMFS(max_iter=2).fit(*planted(n=60)[:2], planted(n=60)[2])  # no warning when every label has a positive
