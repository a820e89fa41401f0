import pytest

from rayapp.config import RetrieverConfig
from rayapp.index import LoadedIndex
from rayapp.retrieve import HybridRetriever, rrf_fuse


def test_rrf_hand_computed():
    fused = rrf_fuse([[1, 2, 3], [3, 1]], rrf_k=60)
    expect = {1: 1 / 61 + 1 / 62, 2: 1 / 62, 3: 1 / 63 + 1 / 61}
    assert [r for r, _ in fused] == [1, 3, 2]
    for r, s in fused:
        assert s == pytest.approx(expect[r])


def test_rrf_single_list_keeps_its_order():
    assert [r for r, _ in rrf_fuse([[5, 2, 9]], 60)] == [5, 2, 9]


@pytest.fixture(scope="module")
def loaded(small_index):
    return LoadedIndex(small_index.path)


def test_hybrid_retrieval(loaded, minilm):
    r = HybridRetriever(loaded, RetrieverConfig(top_k=3), lambda q: minilm.encode(q, normalize_embeddings=True))
    hits, timings = r.retrieve("How do I serialize an object to a JSON string?")
    assert len(hits) == 3 and hits[0].title.startswith("json")
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert [t.stage for t in timings] == ["bm25", "dense", "fuse"]
    assert timings[-1].n_out == 3 and all(t.n_out <= t.n_in for t in timings)


def test_retrieve_many_equals_each_query_alone(loaded, minilm):
    """The served batch path: BM25 and faiss searched once for all queries, each answer its own."""
    enc = lambda q: minilm.encode(q, normalize_embeddings=True)  # noqa: E731
    r = HybridRetriever(loaded, RetrieverConfig(candidates=20), enc)
    qs = ["How do I serialize an object to a JSON string?", "zzzqqqxxyy", "temporary directory", "csv writer"]
    top_ks = [3, 2, 5, 1]
    together = r.retrieve_many(qs, top_ks, enc(qs))
    for q, k, (hits, timings) in zip(qs, top_ks, together):
        alone, alone_t = r.retrieve(q, k)
        assert [h.id for h in hits] == [h.id for h in alone] and len(hits) == k
        assert [h.score for h in hits] == pytest.approx([h.score for h in alone])
        assert [(t.stage, t.n_in, t.n_out) for t in timings] == [(t.stage, t.n_in, t.n_out) for t in alone_t]
    assert together[1][1][0].n_out == 0 and together[0][1][0].n_out == 20  # its own BM25 count


def test_dense_only_when_bm25_is_off(loaded, minilm):
    cfg = RetrieverConfig(top_k=4, use_bm25=False)
    enc = lambda q: minilm.encode(q, normalize_embeddings=True)
    hits, timings = HybridRetriever(loaded, cfg, enc).retrieve("temporary directory")
    dense = [loaded.ids[r] for r, _ in loaded.search_dense(enc("temporary directory"), 4)]
    assert [h.id for h in hits] == dense and [t.stage for t in timings] == ["dense", "fuse"]


def test_needs_one_retriever(loaded):
    with pytest.raises(ValueError, match="enable at least one"):
        HybridRetriever(loaded, RetrieverConfig(use_bm25=False, use_dense=False), lambda q: None)
