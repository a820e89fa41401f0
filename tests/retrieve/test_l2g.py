"""Local-to-global distillation: rows from the funnel's teacher, and the KL falls with training."""

import pytest

from rayapp.config import FunnelConfig
from rayapp.index import LoadedIndex
from rayapp.retrieve.funnel import FunnelRetriever, rollup_scores
from rayapp.retrieve.l2g import l2g_kl, l2g_rows, read_queries, train_l2g

QUERIES = ["How do I write rows to a CSV file?", "Parse a JSON document into Python objects",
           "Create a temporary directory that is removed afterwards", "Which dialect options does the csv reader take?",
           "Encode Python data as a JSON string", "Make a named temporary file"]


@pytest.fixture(scope="module")
def funnel(funnel_index, minilm):
    ix = LoadedIndex(funnel_index.path)
    # teacher: the bi-encoder on passages; the pre-ranker learns to order documents by its roll-up
    return FunnelRetriever(ix, FunnelConfig(clusters=3, docs=4, post_ranker="dense"),
                           lambda q: minilm.encode(q, normalize_embeddings=True))


def test_rows_carry_the_rolled_up_teacher_scores(funnel):
    rows, skipped = l2g_rows(funnel, QUERIES, candidate_docs=4, alpha=0.7)
    assert skipped + len(rows) == len(QUERIES) and len(rows) >= 4
    r = rows[0]
    assert len(r["negs"]) == 3 and r["pos_score"] >= max(r["neg_scores"])
    # recompute the teacher for the first row's query by hand
    ix = funnel.index
    res = funnel.run(r["query"], docs=4, passages=None)
    expect = rollup_scores(res.passage_scores, [int(ix.passage_doc[p]) for p in res.passages], 0.7)
    assert r["pos_score"] == pytest.approx(max(expect.values()))
    assert ix.document_ids.index(r["doc_ids"][0]) == max(expect, key=expect.get)


def test_l2g_training_lowers_the_kl(ray_session, funnel, tmp_path):
    rows, _ = l2g_rows(funnel, QUERIES, candidate_docs=4, alpha=0.7)
    init = funnel.index.manifest["embedder"]["path"]
    before = l2g_kl(init, rows, tau_s=0.05, max_doc_tokens=128)
    out = train_l2g(rows, init, tmp_path, steps=8, batch_size=4, lr=2e-4, tau=0.05, cpus_per_worker=1.0,
                    torch_threads=2, max_doc_tokens=128)
    after = l2g_kl(out["path"], rows, tau_s=0.05, max_doc_tokens=128)
    assert after < before, (before, after)


def test_read_queries_names_the_bad_line(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text('{"query": "a"}\nplain question\n\n{"question": "b"}\n{"id": 3}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"q.jsonl:5: no 'query', 'question' or 'text' field"):
        read_queries(p)
    p.write_text('{"query": "a"}\nplain question\n{"question": "b"}\n', encoding="utf-8")
    assert read_queries(p) == ["a", "plain question", "b"]
