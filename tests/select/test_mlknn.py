import numpy as np
import pytest

from rayapp.select.mlknn import MLkNN


def test_prior_and_likelihoods_by_hand():
    # four points on a line, k = 1: neighbours 0<->1 and 2<->3
    X = np.array([[0.0], [1.0], [10.0], [11.0]])
    Y = np.array([[1], [1], [0], [1]])
    m = MLkNN(k=1, s=1.0).fit(X, Y)
    assert m.prior_[0] == pytest.approx((1 + 3) / (2 + 4))
    # counts C: row0 -> Y[1] = 1, row1 -> 1, row2 -> Y[3] = 1, row3 -> Y[2] = 0
    # label-1 rows (0, 1, 3): C = 1, 1, 0 -> c1 = [1, 2]; label-0 row (2): C = 1 -> c0 = [0, 1]
    np.testing.assert_allclose(m.like1_[0], [(1 + 1) / (2 + 3), (1 + 2) / (2 + 3)])
    np.testing.assert_allclose(m.like0_[0], [(1 + 0) / (2 + 1), (1 + 1) / (2 + 1)])
    p = m.predict_proba(np.array([[0.4]]))  # nearest is row 0 (label 1): C = 1
    p1, p0 = (4 / 6) * (3 / 5), (2 / 6) * (2 / 3)
    assert p[0, 0] == pytest.approx(p1 / (p1 + p0))


def test_learns_separable_labels():
    rng = np.random.default_rng(0)
    Y = rng.random((150, 3)) < 0.5
    X = 5.0 * Y + rng.normal(0, 0.3, (150, 3))  # each label moves the point along its own axis
    m = MLkNN(k=5).fit(X[:100], Y[:100])
    assert (m.predict(X[100:]) == Y[100:]).mean() > 0.9


def test_bad_k_and_tiny_training_set():
    with pytest.raises(ValueError, match="k must be >= 1"):
        MLkNN(k=0)
    with pytest.raises(ValueError, match="smoothing s must be > 0"):
        MLkNN(s=0)
    with pytest.raises(ValueError, match="at least 2"):
        MLkNN().fit(np.zeros((1, 2)), np.ones((1, 1)))
