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
