"""The retrieve benchmarks' own parts: distractor text and the ANN comparison at a tiny size."""

from rayapp.retrieve.bench import BenchANNConfig, bench_ann, distractor_docs, distractor_titles


def test_distractors_are_deterministic_and_sized():
    src = ["the cat sat on the mat today", "a dog ran in the park", "the park was green and wide"]
    a = distractor_docs(src, 5, words=30, seed=1)
    assert a == distractor_docs(src, 5, words=30, seed=1) and len(a) == 5
    assert all(len(d.split()) == 30 for d in a)
    vocab = {w for s in src for w in s.split()}
    assert all(set(d.split()) <= vocab for d in a)


def test_distractor_titles_look_real_and_never_collide():
    real = [f"PMID {n}" for n in range(10_000_000, 10_000_050)]
    titles = distractor_titles(real, 200, seed=3)
    assert titles == distractor_titles(real, 200, seed=3) and len(set(titles)) == 200
    assert not set(titles) & set(real)
    assert all(t.startswith("PMID ") and len(t.split()[1]) == 8 and t.split()[1].isdigit() for t in titles)


def test_ann_bench_small(tmp_path):
    r = bench_ann(BenchANNConfig(n=3000, dim=32, centers=20, queries=50, factories=["IVF16,Flat", "HNSW16"],
                                 nprobe=[16], ef_search=[64], results_dir=tmp_path))["results"]
    assert r["flat"]["recall@10"] == 1.0
    assert r["IVF16,Flat nprobe=16"]["recall@10"] == 1.0  # every list probed: exact
    assert 0.5 < r["HNSW16 efSearch=64"]["recall@10"] <= 1.0


def test_dev_sweep_counts_gold_survival_through_stages_1_2(funnel_index, minilm):
    from rayapp.config import FunnelConfig
    from rayapp.index import LoadedIndex
    from rayapp.retrieve.bench import BenchFunnelConfig, _dev_sweep

    ix = LoadedIndex(funnel_index.path)
    doc_rows: dict[str, list[int]] = {}
    for i, t in enumerate(ix.doc_titles):
        doc_rows.setdefault(t, []).append(i)
    # each "question" is the first words of a document, whose title is its gold title
    queries = [(" ".join(ix.doc_texts[d].split()[:12]), ix.doc_titles[d])
               for d in range(0, len(ix.document_ids), max(1, len(ix.document_ids) // 12))]
    n = len(ix.cluster_ids)
    cfg = BenchFunnelConfig(funnel=FunnelConfig(docs=3, post_ranker="dense"), dev_sweep_rankers=["bm25", "hybrid"],
                            dev_sweep_clusters=[1, 2, n])
    encode = lambda q: minilm.encode(q, normalize_embeddings=True)  # noqa: E731
    rows = _dev_sweep(cfg, ix, encode, None, doc_rows, queries)
    assert [(r["cluster_ranker"], r["clusters"]) for r in rows] == [(h, c) for h in ("bm25", "hybrid") for c in (1, 2, n)]
    for r in rows:
        assert r["questions"] == len(queries) and r["docs"] == 3 and 0 <= r["kept_docs"] <= r["kept_clusters"] <= 1
    bm25 = [r for r in rows if r["cluster_ranker"] == "bm25"]
    assert bm25[0]["kept_clusters"] <= bm25[1]["kept_clusters"] <= bm25[2]["kept_clusters"] == 1.0  # top-k nests
    assert rows[-1]["kept_clusters"] == 1.0 and bm25[2]["kept_docs"] > 0.5  # every cluster kept; its own words find it
    assert _dev_sweep(cfg.model_copy(update={"dev_sweep_rankers": []}), ix, encode, None, doc_rows, queries) == []
