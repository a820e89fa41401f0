import numpy as np
import pytest

from rayapp.select import metrics as M

# three rows, four labels; no ties among scores
Y = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 1, 0]])
S = np.array([[0.9, 0.8, 0.1, 0.3], [0.6, 0.5, 0.2, 0.1], [0.2, 0.7, 0.9, 0.4]])
P = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0]])


def test_hand_computed_values():
    # Hamming: errors 2 + 2 + 1 of 12
    assert M.hamming_loss(Y, P) == pytest.approx(5 / 12)
    # one-error: tops are labels 0 (relevant), 0 (irrelevant), 2 (relevant)
    assert M.one_error(Y, S) == pytest.approx(1 / 3)
    # ranks: row0 [1,2,4,3] rel {0,2} -> max 4; row1 [1,2,3,4] rel {1} -> 2; row2 [4,2,1,3] rel {0,1,2} -> 4
    assert M.coverage(Y, S) == pytest.approx(((4 - 1) + (2 - 1) + (4 - 1)) / 3)
    # ranking loss: row0 pairs (0,1) ok (0,3) ok (2,1) bad (2,3) bad -> 2/4; row1 (1,0) bad (1,2) ok (1,3) ok -> 1/3;
    # row2 (0,3) bad (1,3) ok (2,3) ok -> 1/3
    assert M.ranking_loss(Y, S) == pytest.approx((2 / 4 + 1 / 3 + 1 / 3) / 3)
    # AP: row0 label0 rank1 -> 1/1, label2 rank4 -> 2/4; row1 label1 rank2 -> 1/2; row2 ranks 4,2,1 -> 3/4, 2/2, 1/1
    assert M.average_precision(Y, S) == pytest.approx(((1 + 0.5) / 2 + 0.5 + (0.75 + 1 + 1) / 3) / 3)
    # per-label F1: l0 tp1 fp1 fn1 -> 0.5; l1 tp1 fp1 fn1 -> 0.5; l2 tp1 fp0 fn1 -> 2/3; l3 0/0 -> 0
    assert M.macro_f1(Y, P) == pytest.approx((0.5 + 0.5 + 2 / 3 + 0) / 4)
    assert M.micro_f1(Y, P) == pytest.approx(2 * 3 / (2 * 3 + 2 + 3))  # pooled tp 3, fp 2, fn 3


def test_ties_count_against_the_ranking():
    y, s = np.array([[1, 0]]), np.array([[0.5, 0.5]])
    assert M.ranking_loss(y, s) == 1.0 and M.coverage(y, s) == 1.0 and M.average_precision(y, s) == 0.5


def test_rows_without_relevant_labels_are_skipped_by_ranking_metrics():
    y = np.vstack([Y, [0, 0, 0, 0]])
    s = np.vstack([S, [0.1, 0.2, 0.3, 0.4]])
    assert M.average_precision(y, s) == pytest.approx(M.average_precision(Y, S))
    assert M.one_error(y, s) == pytest.approx(M.one_error(Y, S))


def test_agrees_with_scikit_learn_on_random_data():
    from sklearn import metrics as skm

    rng = np.random.default_rng(0)
    y = rng.random((50, 7)) < 0.3
    y[:, 0] |= ~y.any(1)  # every row has a relevant label
    y[:, 1] &= ~y.all(1)  # and an irrelevant one
    s = rng.random((50, 7))
    p = s > 0.5
    assert M.average_precision(y, s) == pytest.approx(skm.label_ranking_average_precision_score(y, s))
    assert M.ranking_loss(y, s) == pytest.approx(skm.label_ranking_loss(y, s))
    assert M.coverage(y, s) == pytest.approx(skm.coverage_error(y, s) - 1)
    assert M.hamming_loss(y, p) == pytest.approx(skm.hamming_loss(y, p))
    assert M.macro_f1(y, p) == pytest.approx(skm.f1_score(y, p, average="macro", zero_division=0))
    assert M.micro_f1(y, p) == pytest.approx(skm.f1_score(y, p, average="micro", zero_division=0))


def test_no_usable_row_is_an_error():
    with pytest.raises(ValueError, match="average_precision: no row has the labels it needs"):
        M.average_precision(np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="ranking_loss: no row"):
        M.ranking_loss(np.ones((2, 3)), np.ones((2, 3)))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        M.hamming_loss(Y, P[:, :3])
