"""Training pairs: hard-negative mining, ranking-consistency filtering, weak and synthetic pairs.

Hand-built 2-d vectors give known ranks: corpus text ``c{j}`` scores ``s_j = 0.99 - 0.004 j`` for the
query ``Q = (1, 0)`` (so its 0-based rank is ``j``) and ``-s_j`` for ``R = (-1, 0)`` (rank ``N-1-j``).
"""

import numpy as np
import pytest
from pydantic import ValidationError

from rayapp.data._sources import bad_row, good_row
from rayapp.data.pairs import (PairsConfig, filter_by_rank_consistency, instruction_for, mine_hard_negatives,
                               positive_ranks, synthesize_queries, training_rows_from_vectors, weak_pairs)

N = 200
Q = np.array([1.0, 0.0], dtype=np.float32)
R = np.array([-1.0, 0.0], dtype=np.float32)


def unit(score: float) -> np.ndarray:
    """A unit vector whose inner product with Q is ``score``."""
    return np.array([score, np.sqrt(1 - score**2)], dtype=np.float32)


def score(j: float) -> float:
    return 0.99 - 0.004 * j


CORPUS = [f"c{j}" for j in range(N)]
CVECS = np.stack([unit(score(j)) for j in range(N)])


def mine(queries, positives, qvecs, corpus=CORPUS, cvecs=CVECS, **kw):
    return mine_hard_negatives(queries, positives, corpus, np.stack(qvecs), cvecs, **kw)


def idx(texts):
    return {int(t[1:]) for t in texts}


# ----------------------------------------------------------------------------------------- mining
def test_negatives_come_from_the_rank_window():
    negs = mine(["q", "r"], [["p"], ["p"]], [Q, R], k=7, rank_lo=50, rank_hi=100)
    assert len(negs[0]) == len(set(negs[0])) == 7 and idx(negs[0]) <= set(range(50, 100))
    assert len(negs[1]) == 7 and idx(negs[1]) <= set(range(N - 100, N - 50))  # reversed ranks for R
    window = mine(["q"], [["p"]], [Q], k=3, rank_lo=10, rank_hi=13)
    assert idx(window[0]) == {10, 11, 12}  # exactly the window [10, 13), 0-based


def test_negatives_never_contain_a_positive_or_the_query():
    pos = [f"c{j}" for j in range(60, 96)]
    for seed in range(20):
        negs = mine(["c55"], [pos], [Q], k=7, seed=seed)[0]
        assert len(negs) == 7 and not set(negs) & (set(pos) | {"c55"})
        assert idx(negs) <= {50, 51, 52, 53, 54, 56, 57, 58, 59, 96, 97, 98, 99}


def test_short_window_is_filled_from_random_documents():
    pos = [f"c{j}" for j in range(50, 98)]
    stats = {}
    negs = mine(["c3"], [pos], [Q], k=7, stats=stats)[0]
    assert {"c98", "c99"} <= set(negs) and len(negs) == len(set(negs)) == 7
    assert not set(negs) & (set(pos) | {"c3"})
    assert stats == {"from_window": 2, "from_random": 5}
    # a corpus shorter than rank_hi: the window is what exists past rank_lo
    stats = {}
    negs = mine(["q"], [["c0"]], [Q], corpus=CORPUS[:53], cvecs=CVECS[:53], k=7, stats=stats)[0]
    assert {"c50", "c51", "c52"} <= set(negs) and stats == {"from_window": 3, "from_random": 4}
    assert "c0" not in negs
    # a corpus too small to fill gives what there is
    negs = mine(["q"], [["c0"]], [Q], corpus=CORPUS[:4], cvecs=CVECS[:4], k=7)[0]
    assert sorted(negs) == ["c1", "c2", "c3"]


def test_mining_is_seeded():
    a = mine(["q"], [["p"]], [Q], seed=1)
    assert a == mine(["q"], [["p"]], [Q], seed=1)
    assert any(mine(["q"], [["p"]], [Q], seed=s) != a for s in range(2, 6))


def test_mining_checks_its_inputs():
    with pytest.raises(ValueError, match="2 queries, 1 positive lists, 2 query vectors"):
        mine(["a", "b"], [["p"]], [Q, R])
    with pytest.raises(ValueError, match="rank_lo < rank_hi"):
        mine(["q"], [["p"]], [Q], rank_lo=100, rank_hi=100)


# ----------------------------------------------------------------------------------------- filter
def _row(pos, task="t", query="q"):
    return {"query": query, "pos": pos, "task": task}


def test_positive_rank_excludes_its_positives_and_the_query():
    rows = [_row(["c49"]), _row(["c50"]), _row(["c120", "c49"]), _row(["c50"], query="c0")]
    pvecs = [CVECS[[int(t[1:]) for t in r["pos"]]] for r in rows]
    ranks = positive_ranks([r["query"] for r in rows], [r["pos"] for r in rows], CORPUS,
                           np.stack([Q] * 4), pvecs, CVECS)
    assert ranks == [49, 50, 49, 49]


def test_filter_drops_exactly_outside_the_top_k():
    # positives outside the corpus, scored just above / below corpus ranks 48, 49, 50
    rows = [_row(["p48"]), _row(["p49"]), _row(["p50"]), _row(["p-in49"]), _row(["p-in50"])]
    pvecs = [unit(score(48.5))[None], unit(score(49.5))[None], unit(score(50.5))[None],
             CVECS[[49]], CVECS[[50]]]
    rows[3]["pos"], rows[4]["pos"] = ["c49"], ["c50"]
    kept, dropped = filter_by_rank_consistency(rows, np.stack([Q] * 5), pvecs, CORPUS, CVECS, filter_topk=50)
    # ranks: 49 (kept), 50 (dropped), 51 (dropped), 49 (kept), 50 (dropped)
    assert [r["pos"] for r in kept] == [["p48"], ["c49"]] and dropped == {"t": 3}
    kept, dropped = filter_by_rank_consistency(rows, np.stack([Q] * 5), pvecs, CORPUS, CVECS, filter_topk=51)
    assert len(kept) == 4 and dropped == {"t": 1}


def test_filter_counts_drops_per_task():
    rows = [_row(["c10"], "a"), _row(["c90"], "a"), _row(["c80"], "b"), _row(["c70"], "b"), _row(["c1"], "c")]
    pvecs = [CVECS[[int(r["pos"][0][1:])]] for r in rows]
    kept, dropped = filter_by_rank_consistency(rows, np.stack([Q] * 5), pvecs, CORPUS, CVECS, filter_topk=50)
    assert dropped == {"a": 1, "b": 2, "c": 0} and [r["pos"] for r in kept] == [["c10"], ["c1"]]
    with pytest.raises(ValueError, match="filter_topk must be >= 1"):
        filter_by_rank_consistency(rows, np.stack([Q] * 5), pvecs, CORPUS, CVECS, filter_topk=0)


def test_training_rows_from_vectors():
    lookup = {t: j for j, t in enumerate(CORPUS)}
    vectors = np.concatenate([CVECS, Q[None]])
    lookup["what?"] = N
    pairs = [{"query": "what?", "pos": ["c5"], "task": "title-body", "domain": "d"},
             {"query": "what?", "pos": ["c150"], "task": "title-body", "domain": "d"},
             {"query": " ", "pos": ["c5"], "task": "x", "domain": "d"}]
    rows, report = training_rows_from_vectors(pairs, CORPUS, lookup, vectors, PairsConfig())
    assert len(rows) == 1 and report["dropped_by_task"] == {"title-body": 1} and report["pairs_in"] == 2
    row = rows[0]
    assert set(row) == {"query", "pos", "negs", "task", "domain", "instruction"}
    assert len(row["negs"]) == 7 and idx(row["negs"]) <= set(range(50, 100))
    assert row["instruction"] == "Instruct: Given a title, retrieve the document it heads \n Query: "


# ------------------------------------------------------------------------------------------ config
def test_pairs_config_rules():
    cfg = PairsConfig()
    assert (cfg.k, cfg.rank_lo, cfg.rank_hi, cfg.filter_topk) == (7, 50, 100, 50)
    assert instruction_for("unknown-task", cfg) == "Instruct: Given a query, retrieve relevant passages \n Query: "
    with pytest.raises(ValidationError, match=r"rank_hi \(50\) must be greater than rank_lo \(50\)"):
        PairsConfig(rank_lo=50, rank_hi=50)
    with pytest.raises(ValidationError, match="must contain '{task}'"):
        PairsConfig(instruction_format="Query: ")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        PairsConfig(kk=3)


# -------------------------------------------------------------------------------------- weak pairs
DOCS = [
    good_row("json.dumps", "Serialize obj to a JSON formatted str. Uses the encoder given as cls.", "json",
             "stdlib:json"),
    good_row("", "No title here. But a body that is long enough.", "x", "file:a.md"),
    good_row("Short", "One sentence only without end", "x", "file:b.md"),
    bad_row("file:c.md", "invalid UTF-8 at byte 3"),
]


def test_weak_pairs_title_body():
    pairs = weak_pairs(DOCS, "title-body")
    assert [p["query"] for p in pairs] == ["json.dumps", "Short"]
    assert pairs[0]["pos"] == [DOCS[0]["text"]] and pairs[0]["task"] == "title-body"
    assert pairs[0]["domain"] == "stdlib" and pairs[1]["domain"] == "file"
    assert weak_pairs(DOCS, domain="code")[0]["domain"] == "code"


def test_weak_pairs_summary_body():
    pairs = weak_pairs(DOCS, "summary-body")
    assert [(p["query"], p["pos"]) for p in pairs] == [
        ("Serialize obj to a JSON formatted str.", ["Uses the encoder given as cls."]),
        ("No title here.", ["But a body that is long enough."]),
    ]
    with pytest.raises(ValueError, match="task must be 'title-body' or 'summary-body', not 'x'"):
        weak_pairs(DOCS, "x")


# --------------------------------------------------------------------------------------- synthetic
def test_synthesize_queries_keeps_persona_task_and_passage(ray_session, tiny_lm_dir):
    cfg = PairsConfig(personas=["a chemist", "a child"], task_types={"question": "a short question"},
                      synthetic={"model": tiny_lm_dir, "max_new_tokens": 4, "batch_size": 2, "passages_limit": 3})
    passages = [{"passage_id": f"p{i}", "text": f"Passage number {i} talks about topic {i}."} for i in range(4)]
    rows = synthesize_queries(passages, cfg)
    assert [r["passage_id"] for r in rows] == ["p0", "p1", "p2"]  # passages_limit, passage order
    for r, p in zip(rows, passages):
        assert r["persona"] in cfg.personas and r["task"] == "question"
        assert r["passage"] == p["text"] and isinstance(r["query"], str)


def test_build_training_rows_on_ray_data(ray_session):
    from rayapp.config import EmbedConfig
    from rayapp.data.pairs import build_training_rows

    docs = [good_row(f"topic {i}", f"Body of document {i} about subject {i} in some detail.", "c", "file:x")
            for i in range(8)]
    pairs = weak_pairs(docs)
    corpus = [d["text"] for d in docs]
    cfg = PairsConfig(k=2, rank_lo=1, rank_hi=4, filter_topk=8)
    rows, report = build_training_rows(pairs, corpus, EmbedConfig(batch_size=16), cfg)
    assert report["pairs_in"] == 8 and report["kept"] + report["dropped"] == 8 and report["encoded_texts"] == 16
    assert report["kept"] == 8  # filter_topk covers the whole corpus: nothing can rank outside
    for row in rows:
        assert len(row["negs"]) == 2 and not set(row["negs"]) & {row["query"], *row["pos"]}
        assert set(row["negs"]) <= set(corpus) and row["task"] == "title-body"
