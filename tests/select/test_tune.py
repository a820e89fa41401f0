import numpy as np
import pytest

from rayapp.select import sgmfs as sgmfs_module
from rayapp.select.bench import evaluate_selection, feature_counts
from rayapp.select.data import MultiLabelDataError
from rayapp.select.selectors import select_scores, top_features
from rayapp.select.sgmfs import SGMFS
from rayapp.select.tune import SGMFSCV
from test_sgmfs import planted

FAST = {"max_iter": 8, "inner_steps": 3}
GRID = {"alpha": [0.1, 0.3], "beta": [3.0, 30.0]}


@pytest.fixture(scope="module")
def tuned():
    X, Y, lab = planted(n=200)
    return X, Y, lab, SGMFSCV(grid=GRID, folds=3, seed=4, **FAST).fit(X, Y, lab)


def test_each_candidate_is_scored_and_the_best_is_refitted_on_every_labelled_row(tuned):
    X, Y, lab, cv = tuned
    assert [r["params"] for r in cv.cv_results_] == [{"alpha": a, "beta": b} for a in (0.1, 0.3) for b in (3.0, 30.0)]
    means = [r["mean"] for r in cv.cv_results_]
    assert cv.best_params_ == cv.cv_results_[int(np.argmax(means))]["params"]
    assert all(len(r["folds"]) == 3 and 0 < r["mean"] <= 1 for r in cv.cv_results_)
    refit = SGMFS(**FAST, **cv.best_params_).fit(X, Y, lab)
    np.testing.assert_allclose(cv.scores_, refit.scores_)
    np.testing.assert_array_equal(cv.soft_labels_[lab], Y[lab])


def test_the_planted_features_rank_at_the_top_whichever_candidate_wins():
    X, Y, lab = planted()  # 10 informative features of 30
    cv = SGMFSCV(grid=GRID, folds=3, max_iter=10, inner_steps=5).fit(X, Y, lab)
    assert (top_features(cv.scores_, 10) < 10).sum() >= 8, cv.best_params_


def test_a_fold_score_is_ml_knn_on_the_hidden_fold(tuned):
    X, Y, lab, cv = tuned
    rows = np.flatnonzero(lab)
    held = np.sort(np.array_split(np.random.default_rng(4).permutation(rows), 3)[1])
    fit_lab = lab.copy()
    fit_lab[held] = False
    params = cv.cv_results_[2]["params"]
    scores = SGMFS(**FAST, **params).fit(X, Y, fit_lab).scores_
    reports = evaluate_selection(X, Y, scores, fit_lab, np.arange(len(X)), held, feature_counts(30, [0.25, 0.5, 0.75]))
    assert cv.cv_results_[2]["folds"][1] == pytest.approx(np.mean([r["average_precision"] for r in reports]))


def test_each_fit_hides_one_fold_and_the_last_sees_every_label(monkeypatch):
    X, Y, lab = planted(n=120)
    seen = []
    fit = sgmfs_module.SGMFS.fit

    def spy(self, X_, Y_, labelled):
        seen.append(np.asarray(labelled).copy())
        return fit(self, X_, Y_, labelled)

    monkeypatch.setattr(sgmfs_module.SGMFS, "fit", spy)
    SGMFSCV(grid={"beta": [30.0]}, folds=4, **FAST).fit(X, Y, lab)
    assert len(seen) == 4 + 1
    hidden = [np.flatnonzero(lab & ~m) for m in seen[:4]]
    assert all(not (m & ~lab).any() for m in seen)  # an unlabelled row never gains a label
    assert sorted(np.concatenate(hidden).tolist()) == np.flatnonzero(lab).tolist()  # each labelled row hidden once
    assert min(map(len, hidden)) >= len(np.flatnonzero(lab)) // 4
    np.testing.assert_array_equal(seen[-1], lab)


def test_the_selector_registry_runs_it_with_the_task_seed():
    X, Y, lab = planted(n=120)
    got = select_scores("sgmfs_cv", X, Y, lab, seed=2, grid={"beta": [3.0, 30.0]}, **FAST)
    np.testing.assert_allclose(got, SGMFSCV(grid={"beta": [3.0, 30.0]}, seed=2, **FAST).fit(X, Y, lab).scores_)


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown SGMFS argument\(s\) \['lam'\] in the grid"):
        SGMFSCV(grid={"lam": [1.0]})
    with pytest.raises(ValueError, match=r"unknown SGMFS argument\(s\) \['iters'\] in the fixed"):
        SGMFSCV(iters=3)
    with pytest.raises(ValueError, match=r"\['beta'\] list no value"):
        SGMFSCV(grid={"beta": []})
    with pytest.raises(ValueError, match=r"\['alpha'\] both fixed and searched"):
        SGMFSCV(alpha=0.2)
    with pytest.raises(ValueError, match="folds must be >= 2"):
        SGMFSCV(folds=1)
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        SGMFSCV(metric="auc")
    X, Y, _ = planted(n=60)
    few = np.zeros(60, bool)
    few[:5] = True
    with pytest.raises(MultiLabelDataError, match="3 folds need at least 6 labelled rows"):
        SGMFSCV(**FAST).fit(X, Y, few)


def test_a_loss_metric_is_minimised():
    X, Y, lab = planted(n=120)
    cv = SGMFSCV(grid={"beta": [3.0, 30.0]}, metric="ranking_loss", **FAST).fit(X, Y, lab)
    assert cv.best_params_ == cv.cv_results_[int(np.argmin([r["mean"] for r in cv.cv_results_]))]["params"]
