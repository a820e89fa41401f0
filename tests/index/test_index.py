import numpy as np
import pytest

from rayapp.config import EmbedConfig, IndexConfig
from rayapp.data import load_passages
from rayapp.index import LoadedIndex, build_index


def test_index_matches_corpus(small_index, small_corpus):
    ix = LoadedIndex(small_index.path)
    assert ix.ids == load_passages(small_corpus.path).column("passage_id").to_pylist()
    assert small_index.manifest["counts"] == {"passages": len(ix), "dim": 384, "embedded": len(ix), "reused_vectors": 0}
    vecs = np.load(small_index.path / "embeddings.npy")
    assert vecs.shape == (len(ix), 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_ray_embeddings_equal_direct_encode(small_index, minilm):
    ix = LoadedIndex(small_index.path)
    vecs = np.load(small_index.path / "embeddings.npy")
    direct = minilm.encode(ix.texts[:20], normalize_embeddings=True)
    cos = (vecs[:20] * direct).sum(axis=1)
    assert cos.min() > 0.999


def test_bm25_and_dense_find_the_right_passage(small_index, minilm):
    ix = LoadedIndex(small_index.path)
    rows = [r for r, _ in ix.search_bm25("TemporaryDirectory context manager", 5)]
    assert ix.titles[rows[0]] == "tempfile.TemporaryDirectory"
    q = minilm.encode("serialize obj to a JSON formatted str", normalize_embeddings=True)
    dense = ix.search_dense(q, 5)
    assert all(ix.titles[r].startswith("json") for r, _ in dense)
    assert "json.dumps" in {ix.titles[r] for r, _ in dense}
    scores = [s for _, s in dense]
    assert scores == sorted(scores, reverse=True)


def test_bm25_query_without_known_terms_is_empty(small_index):
    ix = LoadedIndex(small_index.path)
    assert ix.search_bm25("the of and", 5) == []
    assert ix.search_bm25("zzzqqqxxyy", 5) == []


def test_searches_of_many_queries_equal_each_query_alone(small_index, minilm):
    ix = LoadedIndex(small_index.path)
    qs = ["TemporaryDirectory context manager", "the of and", "write rows to a CSV file", "zzzqqqxxyy"]
    many = ix.search_bm25_many(qs, 5)
    assert many == [ix.search_bm25(q, 5) for q in qs]
    assert many[1] == [] and many[3] == [] and ix.titles[many[0][0][0]] == "tempfile.TemporaryDirectory"
    assert ix.search_bm25_many(["the of and", "zzzqqqxxyy"], 5) == [[], []]
    vecs = minilm.encode(qs, normalize_embeddings=True)
    dense = ix.search_dense_many(vecs, 5)
    for v, got in zip(vecs, dense):
        alone = ix.search_dense(v, 5)
        assert [r for r, _ in got] == [r for r, _ in alone]
        assert [s for _, s in got] == pytest.approx([s for _, s in alone], abs=1e-6)


def test_index_is_reused(small_corpus, small_index, home):
    again = build_index(small_corpus, EmbedConfig(batch_size=32), IndexConfig(), home)
    assert again.cached and again.path == small_index.path


def test_unfinished_index_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished index"):
        LoadedIndex(tmp_path)


def test_new_corpus_version_embeds_only_new_passages(ray_session, tmp_path):
    from rayapp.config import CorpusConfig
    from rayapp.data import build_corpus

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.md").write_text("The retriever fuses BM25 and dense rankings.", encoding="utf-8")
    (src / "b.md").write_text("The generator cites the passages it was given.", encoding="utf-8")
    cfg = CorpusConfig(kind="folder", path=src)
    embed = EmbedConfig(batch_size=8)
    first = build_index(build_corpus(cfg, tmp_path), embed, IndexConfig(funnel=True), tmp_path)
    assert first.manifest["counts"]["embedded"] == 2 and first.manifest["counts"]["documents_embedded"] == 2
    (src / "c.md").write_text("A third page about the index service.", encoding="utf-8")
    second = build_index(build_corpus(cfg, tmp_path), embed, IndexConfig(funnel=True), tmp_path)
    c = second.manifest["counts"]
    assert (c["embedded"], c["reused_vectors"]) == (1, 2)
    assert (c["documents_embedded"], c["reused_doc_vectors"]) == (1, 2)  # documents' vectors reused too
    ix = LoadedIndex(second.path)
    from rayapp.models import load_sentence_transformer

    direct = load_sentence_transformer("minilm", 256).encode(ix.texts, normalize_embeddings=True)
    assert (np.load(second.path / "embeddings.npy") * direct).sum(axis=1).min() > 0.999


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat", "HNSW8", "IVF8,PQ8"])
def test_memory_mapped_faiss_index_searches_as_the_read_one(tmp_path, factory):
    import faiss

    from rayapp.index import _read_faiss

    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 32)).astype("float32")
    built = faiss.index_factory(32, factory, faiss.METRIC_INNER_PRODUCT)
    built.train(x)
    built.add(x)
    faiss.write_index(built, str(tmp_path / "dense.faiss"))
    opened, plain = _read_faiss(faiss, tmp_path / "dense.faiss"), faiss.read_index(str(tmp_path / "dense.faiss"))
    q = rng.standard_normal((5, 32)).astype("float32")
    for ix in (opened, plain):
        if hasattr(ix, "nprobe"):
            ix.nprobe = 4
    (d1, i1), (d2, i2) = opened.search(q, 10), plain.search(q, 10)
    assert (i1 == i2).all() and np.allclose(d1, d2)


def test_gpu_index_config_moves_to_a_gpu_when_there_is_one_else_stays_on_cpu(small_index, tmp_path):
    """``gpu: true`` (GPU faiss when present): on this machine's faiss, with or without a GPU, the
    loaded index answers exactly as the CPU one."""
    import json
    import shutil

    import faiss

    copy = tmp_path / "gpu-index"
    shutil.copytree(small_index.path, copy)
    manifest = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    manifest["config"]["gpu"] = True
    (copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    cpu, gpu = LoadedIndex(small_index.path), LoadedIndex(copy)
    has_gpu = hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0
    assert cpu.on_gpu is False and gpu.on_gpu is has_gpu
    q = np.asarray(cpu.vectors[:3], dtype=np.float32)
    for a, b in zip(cpu.search_dense_many(q, 5), gpu.search_dense_many(q, 5)):
        assert [r for r, _ in a] == [r for r, _ in b]
        np.testing.assert_allclose([s for _, s in a], [s for _, s in b], atol=1e-4)
