import math

import pytest

from rayapp.eval.retrieval import evaluate_run

QRELS = {"q1": {"a": 1, "b": 0, "c": 1}, "q2": {"x": 1}, "q3": {"n": 0}}
RUN = {"q1": {"b": 0.9, "a": 0.8, "c": 0.1, "z": 0.05}, "q2": {"y": 0.9, "w": 0.5, "x": 0.4}}


def test_metrics_match_hand_computed_values():
    m = evaluate_run(QRELS, RUN, ks=(1, 3))
    # q1 ranking b a c z: relevant at ranks 2 and 3; q2: y w x, relevant at rank 3; q3 has no relevant doc
    assert m["queries"] == 2
    assert m["mrr"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert m["map"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1 / 3) / 2)
    dcg1 = 1 / math.log2(3) + 1 / math.log2(4)
    idcg1 = 1 + 1 / math.log2(3)
    assert m["ndcg@10"] == pytest.approx((dcg1 / idcg1 + (1 / math.log2(4)) / 1) / 2)
    assert m["recall@1"] == 0.0 and m["recall@3"] == pytest.approx(1.0)


def test_missing_query_scores_zero_and_empty_qrels_fail():
    m = evaluate_run({"q2": {"x": 1}, "q9": {"k": 1}}, RUN)
    assert m["mrr"] == pytest.approx((1 / 3 + 0) / 2)
    with pytest.raises(ValueError, match="no query has a relevant document"):
        evaluate_run({"q3": {"n": 0}}, RUN)


def test_rouge_l_and_prefix_agreement():
    from rayapp.eval.text import prefix_agreement, rouge_l

    assert rouge_l("the cat sat", "the cat sat") == 1.0
    # LCS("a b c d", "a c d e") = 3 -> P = 3/4, R = 3/4
    assert abs(rouge_l("a b c d", "a c d e") - 0.75) < 1e-9
    assert rouge_l("", "x") == 0.0 and rouge_l("x y", "z") == 0.0
    assert prefix_agreement([1, 2, 3], [1, 2, 4], n=32) == 2 / 3
    assert prefix_agreement([1, 2], [1, 2, 3, 4], n=2) == 1.0 and prefix_agreement([], []) == 1.0


def test_paired_hits_counts_discordant_queries_and_exact_mcnemar_p():
    from rayapp.eval.retrieval import paired_hits

    a = [True, True, False, True, False, True]
    b = [True, False, True, False, False, False]
    r = paired_hits(a, b)
    assert (r["only_a"], r["only_b"]) == (3, 1)
    # n = 4 discordant, min = 1: p = 2 * (C(4,0) + C(4,1)) / 16 = 0.625
    assert r["p_mcnemar"] == pytest.approx(0.625)
    assert paired_hits([True], [True])["p_mcnemar"] == 1.0
    assert paired_hits([True] * 8, [False] * 8)["p_mcnemar"] == pytest.approx(2 / 256)
    with pytest.raises(ValueError, match="same queries"):
        paired_hits([True], [True, False])
