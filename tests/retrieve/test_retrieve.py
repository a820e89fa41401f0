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


def test_dense_only_when_bm25_is_off(loaded, minilm):
    cfg = RetrieverConfig(top_k=4, use_bm25=False)
    enc = lambda q: minilm.encode(q, normalize_embeddings=True)
    hits, timings = HybridRetriever(loaded, cfg, enc).retrieve("temporary directory")
    dense = [loaded.ids[r] for r, _ in loaded.search_dense(enc("temporary directory"), 4)]
    assert [h.id for h in hits] == dense and [t.stage for t in timings] == ["dense", "fuse"]


def test_needs_one_retriever(loaded):
    with pytest.raises(ValueError, match="enable at least one"):
        HybridRetriever(loaded, RetrieverConfig(use_bm25=False, use_dense=False), lambda q: None)
