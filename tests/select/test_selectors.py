import numpy as np
import pytest

from rayapp.select.selectors import SELECTORS, laplacian_score, register_selector, select_scores, top_features
from test_sgmfs import planted


@pytest.mark.parametrize("name, hits", [("mutual_info", 5), ("rfs", 5), ("sgmfs", 8)])
def test_label_aware_selectors_find_the_planted_features(name, hits):
    X, Y, lab = planted()  # 10 informative features of 30: chance puts 10/3 in the top 10
    top = top_features(select_scores(name, X, Y, lab, seed=0), 10)
    assert (top < 10).sum() >= hits, (name, top)


def test_unsupervised_baselines_and_registry():
    X, Y, lab = planted(n=100)
    assert set(SELECTORS) >= {"all", "random", "variance", "laplacian", "mutual_info", "rfs", "sgmfs"}
    np.testing.assert_array_equal(select_scores("all", X, Y, lab), 0)
    r0, r1 = select_scores("random", X, Y, lab, seed=0), select_scores("random", X, Y, lab, seed=1)
    assert not np.array_equal(r0, r1) and np.array_equal(r0, select_scores("random", X, Y, lab, seed=0))
    np.testing.assert_allclose(select_scores("variance", X, Y, lab), X.var(0))
    with pytest.raises(KeyError, match="unknown feature selector 'nope'"):
        select_scores("nope", X, Y, lab)
    with pytest.raises(ValueError, match="already registered"):
        register_selector("rfs")(lambda *a, **k: None)


def test_laplacian_score_prefers_the_manifold_feature():
    rng = np.random.default_rng(0)
    t = np.sort(rng.random(200))
    # two features smooth along the neighbour graph (scale does not matter: neighbours are found in
    # z-scored space), one noise feature, one constant
    X = np.column_stack([10 * t, t**2, rng.random(200), np.full(200, 3.0)])
    ls = laplacian_score(X, k=5)
    assert max(ls[0], ls[1]) < ls[2] and ls[3] == np.inf
    X[:, 0] *= 1e-7  # a feature's scale does not change its score
    np.testing.assert_allclose(laplacian_score(X, k=5)[:3], ls[:3], rtol=1e-6)


def test_top_features_is_stable_on_ties():
    np.testing.assert_array_equal(top_features(np.array([1.0, 3.0, 3.0, 0.0]), 3), [1, 2, 0])
    with pytest.raises(ValueError, match="m must be in"):
        top_features(np.ones(3), 4)
