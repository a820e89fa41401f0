"""FunnelRAG: the funnel's stages, their id maps, the roll-up, and agreement with flat retrieval."""

import numpy as np
import pytest

from rayapp.config import FunnelConfig
from rayapp.index import LoadedIndex
from rayapp.retrieve.funnel import FlatRetriever, FunnelRetriever, rollup_scores

Q = "How do I write rows to a CSV file?"


@pytest.fixture(scope="module")
def ix(funnel_index):
    return LoadedIndex(funnel_index.path)


@pytest.fixture(scope="module")
def encode(minilm):
    return lambda q: minilm.encode(q, normalize_embeddings=True)


@pytest.fixture(scope="module")
def tiny_cross(tiny_cross_dir):
    from rayapp.rerank import CrossEncoder

    return CrossEncoder.from_pretrained(tiny_cross_dir, 64)


def test_rollup_hand_computed():
    got = rollup_scores([1.0, 3.0, 2.0, 5.0], ["a", "a", "a", "b"], alpha=0.25)
    assert got == {"a": pytest.approx(0.25 * 3 + 0.75 * 2), "b": pytest.approx(5.0)}
    assert list(rollup_scores([0, 1], ["y", "x"], 1.0)) == ["y", "x"]
    assert rollup_scores([1.0, 3.0], ["a", "a"], 1.0) == {"a": 3.0}  # alpha = 1: max (MaxP)


def test_id_maps_are_consistent(ix):
    assert ix.manifest["counts"]["clusters"] == len(ix.cluster_ids) > 1
    # every document sits in exactly one cluster; every passage in its own document
    in_clusters = sorted(d for docs in ix.cluster_docs for d in docs)
    assert in_clusters == list(range(len(ix.document_ids)))
    for d, rows in enumerate(ix.doc_passages):
        for p in rows:
            assert ix.passage_doc[p] == d and ix.passage_doc_ids[p] == ix.document_ids[d]
            assert ix.ids[p].startswith(ix.document_ids[d] + "-p")
    assert sum(map(len, ix.doc_passages)) == len(ix)
    assert ix.doc_vectors.shape == (len(ix.document_ids), 384)
    np.testing.assert_allclose(np.linalg.norm(ix.doc_vectors, axis=1), 1.0, atol=1e-4)


def test_counts_only_shrink_and_ids_nest(ix, encode, tiny_cross):
    f = FunnelRetriever(ix, FunnelConfig(clusters=3, docs=5, passages=4, reranker="unused"), encode, tiny_cross)
    r = f.run(Q)
    stages = [t.stage for t in r.timings]
    assert stages == ["encode_query", "clusters_bm25", "docs_dense", "passages_cross"]
    assert all(t.n_out <= t.n_in for t in r.timings)
    c, d, p = (next(t for t in r.timings if t.stage == s) for s in stages[1:])
    assert c.n_out == 3 and d.n_in == sum(len(ix.cluster_docs[x]) for x in r.clusters) and d.n_out == 5
    assert p.n_in == sum(len(ix.doc_passages[x]) for x in r.docs) and p.n_out == 4
    assert set(r.docs) <= {x for cl in r.clusters for x in ix.cluster_docs[cl]}
    assert {ix.passage_doc[x] for x in r.passages} <= set(r.docs)
    assert list(r.passage_scores) == sorted(r.passage_scores, reverse=True)
    hits, _ = f.retrieve(Q, top_k=2)
    assert [h.id for h in hits] == [ix.ids[x] for x in r.passages[:2]] and hits[0].kind == "passage"


def test_no_cutoffs_and_identical_scorers_equal_flat(ix, encode, tiny_cross):
    n = len(ix)
    dense = FunnelRetriever(ix, FunnelConfig(clusters=None, docs=None, passages=None, pre_ranker="dense",
                                              post_ranker="dense"), encode)
    funnel = dense.retrieve(Q, top_k=n)[0]
    flat = FlatRetriever(ix, "dense", encode).retrieve(Q, top_k=n)[0]
    assert len(funnel) == len(flat) == n
    np.testing.assert_allclose([h.score for h in funnel], [h.score for h in flat], atol=1e-5)
    # the same ranking, up to the order of passages whose scores tie (faiss and numpy round alike)
    for a, b in zip(funnel, flat):
        assert a.id == b.id or abs(a.score - b.score) < 1e-5
    # the same with the cross-encoder as the final ranker: funnel == flat dense + rerank of everything
    cross = FunnelRetriever(ix, FunnelConfig(clusters=None, docs=None, passages=None, reranker="x"), encode, tiny_cross)
    flat = FlatRetriever(ix, "dense_rerank", encode, tiny_cross, candidates=n)
    assert [h.id for h in cross.retrieve(Q, top_k=20)[0]] == [h.id for h in flat.retrieve(Q, top_k=20)[0]]


def test_dense_rollup_pre_ranker_rolls_up_passage_cosines(ix, encode):
    alpha = 0.3
    f = FunnelRetriever(ix, FunnelConfig(clusters=None, docs=4, passages=3, pre_ranker="dense_rollup",
                                         post_ranker="dense", alpha=alpha), encode)
    r = f.run(Q)
    assert [t.stage for t in r.timings][2] == "docs_dense_rollup"
    q = np.asarray(encode(Q), dtype=np.float32)
    want = {}
    for d, rows in enumerate(ix.doc_passages):
        cos = np.asarray(ix.vectors[rows]) @ q
        want[d] = alpha * cos.max() + (1 - alpha) * cos.mean()
    best = sorted(want, key=lambda d: -want[d])[:4]
    assert r.docs == best
    np.testing.assert_allclose(r.doc_scores, [want[d] for d in best], atol=1e-5)
    # alpha = 1 is MaxP: the best document holds the best passage of the whole corpus
    top = FunnelRetriever(ix, FunnelConfig(clusters=None, docs=1, passages=1, pre_ranker="dense_rollup",
                                           post_ranker="dense", alpha=1.0), encode).run(Q)
    flat = FlatRetriever(ix, "dense", encode).retrieve(Q, top_k=1)[0][0]
    assert top.passages == [ix.ids.index(flat.id)]


def test_dense_and_hybrid_cluster_rankers(ix, encode):
    q = np.asarray(encode(Q), dtype=np.float32)
    n = len(ix.cluster_ids)
    cent = np.stack([np.asarray(ix.vectors[[p for d in docs for p in ix.doc_passages[d]]]).mean(axis=0)
                     for docs in ix.cluster_docs])
    cos = (cent / np.linalg.norm(cent, axis=1, keepdims=True)) @ q
    dense_rank = sorted(range(n), key=lambda c: (-cos[c], c))
    k = 2
    dense = FunnelRetriever(ix, FunnelConfig(clusters=k, docs=3, passages=2, cluster_ranker="dense",
                                             post_ranker="dense"), encode)
    r = dense.run(Q)
    assert r.clusters == dense_rank[:k] and r.timings[1].stage == "clusters_dense" and r.timings[1].n_out == k
    bm25_rank = [c for c, _ in ix.search_clusters(Q, 4 * k)]
    fused = {}
    for ranking in (dense_rank[: 4 * k], bm25_rank):
        for i, c in enumerate(ranking):
            fused[c] = fused.get(c, 0.0) + 1 / (60 + i)
    want = sorted(fused, key=lambda c: (-fused[c], c))[:k]
    hybrid = FunnelRetriever(ix, FunnelConfig(clusters=k, docs=3, passages=2, cluster_ranker="hybrid",
                                              post_ranker="dense"), encode)
    assert hybrid.run(Q).clusters == want
    # a cluster ranked first by both rankings is first in the fusion
    if dense_rank[0] == bm25_rank[0]:
        assert want[0] == dense_rank[0]
    with pytest.raises(ValueError, match="'hybrid cluster' ranker needs a query encoder"):
        FunnelRetriever(ix, FunnelConfig(cluster_ranker="hybrid", pre_ranker="cross", reranker="x"), cross=object())
    with pytest.raises(ValueError, match="cluster_ranker"):
        FunnelConfig(cluster_ranker="tfidf", post_ranker="dense")


def test_no_matching_term_sends_every_cluster_on(ix, encode):
    f = FunnelRetriever(ix, FunnelConfig(clusters=2, docs=3, passages=2, post_ranker="dense"), encode)
    r = f.run("zzqxv qqzzx")
    assert len(r.clusters) == len(ix.cluster_ids) and len(r.passages) == 2


def test_errors_name_the_problem(small_index, ix, encode):
    with pytest.raises(ValueError, match="unknown ranker 'bogus'"):
        FunnelConfig(pre_ranker="bogus")
    with pytest.raises(ValueError, match="a 'cross' ranker needs the cross-encoder folder"):
        FunnelConfig()
    with pytest.raises(ValueError, match="built without funnel: true"):
        FunnelRetriever(LoadedIndex(small_index.path), FunnelConfig(post_ranker="dense"), encode)
    with pytest.raises(ValueError, match="needs a query encoder"):
        FunnelRetriever(ix, FunnelConfig(post_ranker="dense"))
    with pytest.raises(ValueError, match="'dense_rollup' ranker needs a query encoder"):
        FunnelRetriever(ix, FunnelConfig(pre_ranker="dense_rollup", post_ranker="cross", reranker="x"), cross=object())
    with pytest.raises(ValueError, match="mode must be bm25, dense or dense_rerank"):
        FlatRetriever(ix, "sparse")
