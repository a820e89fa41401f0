"""Benchmarks of the retrieve stage: FunnelRAG vs flat retrieval (quality and time per query, one
run), and faiss approximate indexes vs flat search.

Funnel vs flat: a corpus built by the corpus job from PubMedQA's 1,000 abstracts (documents titled
``PMID <id>``; k-means clusters of at most S tokens; ~128-token passages), optionally with
generated distractor documents (a word-bigram model of the same abstracts: same vocabulary, no
copied sentence) to reach a scale corpus. A question's gold document is its own abstract; a system
*recalls* it when one of its ``top_k`` passages comes from that abstract. Every system runs on the
same queries, one query at a time, interleaved (query 1 through every system, then query 2 ...),
so a change in machine load during the run reaches every system alike.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np

from rayapp.config import EmbedConfig, FunnelConfig, RayConfig, StrictModel, default_home

__all__ = ["BenchFunnelConfig", "bench_funnel", "distractor_docs", "distractor_titles", "pubmedqa_with_distractors",
           "BenchANNConfig", "bench_ann"]


class BenchFunnelConfig(StrictModel):
    data_dir: Optional[Path] = None
    home: Path = default_home()
    reranker: Path = Path("results/bench_reranker/runs/reranker")
    queries: int = 100
    top_k: int = 4
    distractor_docs: int = 0
    funnel: FunnelConfig = FunnelConfig(clusters=8, docs=8, passages=4, reranker="results/bench_reranker/runs/reranker")
    #: more funnels in the same run, by name (for example another pre-ranker or other counts)
    funnel_variants: dict[str, FunnelConfig] = {}
    flat_candidates: list[int] = [100, 32]
    #: stages 1-2 only, on the PubMedQA *train* questions (a dev set: their abstracts are in the
    #: corpus, they are not test questions): how often each cluster ranker x cluster count keeps the
    #: gold abstract through ``funnel.docs`` documents; for choosing counts without the test questions
    dev_sweep_rankers: list[Literal["bm25", "dense", "hybrid"]] = []
    dev_sweep_clusters: list[int] = [80, 160, 240]
    embed: EmbedConfig = EmbedConfig(actors=2, num_cpus_per_actor=1.0, torch_threads=1)
    cluster_tokens: int = 4096
    cluster_features: Literal["embedding", "tfidf"] = "embedding"
    torch_threads: int = 2
    seed: int = 0
    results_dir: Path = Path("results/bench_funnel")
    ray: RayConfig = RayConfig()


def distractor_docs(texts: list[str], n: int, words: int = 250, seed: int = 0) -> list[str]:
    """``n`` documents of about ``words`` words from a word-bigram model of ``texts``."""
    rng = np.random.default_rng(seed)
    follow: dict[str, list[str]] = {}
    for t in texts:
        w = t.split()
        for a, b in zip(w, w[1:]):
            follow.setdefault(a, []).append(b)
    starts = [t.split()[0] for t in texts if t.split()]
    out = []
    for _ in range(n):
        cur = starts[int(rng.integers(len(starts)))]
        doc = [cur]
        while len(doc) < words:
            nxt = follow.get(cur)
            cur = nxt[int(rng.integers(len(nxt)))] if nxt else starts[int(rng.integers(len(starts)))]
            doc.append(cur)
        out.append(" ".join(doc))
    return out


def distractor_titles(real: list[str], n: int, seed: int = 0) -> list[str]:
    """``n`` titles shaped like the real ``PMID <8 digits>`` ones, none equal to a real one: a
    distractor's title must not give it away to the title-aware stages (the cluster features and
    the cluster BM25 read titles)."""
    rng = np.random.default_rng([seed, 1])
    taken, out = set(real), []
    while len(out) < n:
        t = f"PMID {int(rng.integers(10_000_000, 30_000_000))}"
        if t not in taken:
            taken.add(t)
            out.append(t)
    return out


def pubmedqa_with_distractors(home: Path, qa, n: int, seed: int = 0) -> Path:
    """A JSONL corpus file under ``home``: PubMedQA's abstracts plus ``n`` generated distractors
    (titled like the abstracts, :func:`distractor_titles`)."""
    src = Path(home) / "bench_funnel" / f"pubmedqa-{n}.jsonl"
    src.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"title": d["title"], "text": d["text"]} for d in qa.docs]
    rows += [{"title": title, "text": t} for title, t in zip(
        distractor_titles([d["title"] for d in qa.docs], n, seed),
        distractor_docs([d["text"] for d in qa.docs], n, seed=seed))]
    tmp = src.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(src)
    return src


def _build(cfg: BenchFunnelConfig, qa) -> Any:
    from rayapp.config import ClusterConfig, CorpusConfig, IndexConfig
    from rayapp.data import build_corpus
    from rayapp.index import build_index

    src = pubmedqa_with_distractors(cfg.home, qa, cfg.distractor_docs, cfg.seed)
    corpus = build_corpus(CorpusConfig(kind="jsonl", path=src, dedup={"near": False},
                                       clusters=ClusterConfig(by="kmeans", features=cfg.cluster_features,
                                                                             max_tokens=cfg.cluster_tokens)), cfg.home)
    return build_index(corpus, cfg.embed, IndexConfig(funnel=True), cfg.home)


def _gold_kept(system, query: str, gold_title: str, doc_rows: dict[str, list[int]]) -> tuple[bool, bool]:
    """Whether the document titled ``gold_title`` survives the funnel's cluster and document stages."""
    ix = system.index
    _, _, kept_c, kept_d, _, _ = system.coarse(query)
    gold = set(doc_rows.get(gold_title, []))
    return bool(gold & {d for c in kept_c for d in ix.cluster_docs[c]}), bool(gold & set(kept_d))


def _dev_sweep(cfg: BenchFunnelConfig, ix, encode, cross, doc_rows, queries: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Gold-document survival through stages 1-2 for ``(question, gold title)`` pairs (the dev, i.e.
    train, questions) at every ``dev_sweep_rankers`` x ``dev_sweep_clusters``; stage 3 is not run."""
    from rayapp.retrieve.funnel import FunnelRetriever

    if not cfg.dev_sweep_rankers:
        return []
    vecs = {text: encode(text) for text, _ in queries}
    rows = []
    for how in cfg.dev_sweep_rankers:
        for n in cfg.dev_sweep_clusters:
            fr = FunnelRetriever(ix, cfg.funnel.model_copy(update={"clusters": n, "cluster_ranker": how}),
                                 vecs.__getitem__, cross)
            kept = np.array([_gold_kept(fr, text, title, doc_rows) for text, title in queries])
            rows.append({"cluster_ranker": how, "clusters": n, "docs": cfg.funnel.docs, "questions": len(queries),
                         "kept_clusters": float(kept[:, 0].mean()), "kept_docs": float(kept[:, 1].mean())})
    return rows


def bench_funnel(cfg: BenchFunnelConfig) -> dict[str, Any]:
    """Recall@top_k of the gold abstract and seconds per query for the funnel and the flat
    baselines; Ray must be initialised (the corpus and index are built on it, or reused)."""
    import torch

    from rayapp.data.sets import load_pubmedqa
    from rayapp.eval.retrieval import paired_hits
    from rayapp.index import LoadedIndex
    from rayapp.models import load_sentence_transformer
    from rayapp.rerank import CrossEncoder
    from rayapp.retrieve.funnel import FlatRetriever, FunnelRetriever

    torch.set_num_threads(cfg.torch_threads)
    qa = load_pubmedqa(cfg.data_dir, "all")
    t0 = time.perf_counter()
    info = _build(cfg, qa)
    build_s = time.perf_counter() - t0
    ix = LoadedIndex(info.path)
    st = load_sentence_transformer(info.manifest["embedder"]["path"], info.manifest["embedder"]["max_seq_length"])
    encode = lambda q: st.encode(q, normalize_embeddings=True)  # noqa: E731
    cross = CrossEncoder.from_pretrained(cfg.funnel.reranker, cfg.funnel.reranker_max_length)
    test_ids = set(load_pubmedqa(cfg.data_dir, "test").qrels)
    queries = [q for q in qa.queries if q["qid"] in test_ids][: cfg.queries]
    systems: dict[str, Any] = {
        "flat BM25": FlatRetriever(ix, "bm25"),
        "flat dense": FlatRetriever(ix, "dense", encode),
        **{f"flat dense + rerank {n}": FlatRetriever(ix, "dense_rerank", encode, cross, candidates=n,
                                                      batch_size=cfg.funnel.rerank_batch_size)
           for n in cfg.flat_candidates},
        "funnel": FunnelRetriever(ix, cfg.funnel, encode, cross),
        **{name: FunnelRetriever(ix, fc, encode, cross) for name, fc in cfg.funnel_variants.items()},
    }
    doc_rows: dict[str, list[int]] = {}
    for i, title in enumerate(ix.doc_titles):
        doc_rows.setdefault(title, []).append(i)
    encode("warm up")
    cross.score("warm up", ["warm up"])
    per: dict[str, dict[str, list]] = {name: {"ok": [], "s": [], "cross": [], "stages": {}, "kept": []}
                                       for name in systems}
    for q in queries:  # interleaved: every system sees the same machine load
        for name, system in systems.items():
            t0 = time.perf_counter()
            hits, timings = system.retrieve(q["text"], top_k=cfg.top_k)
            p = per[name]
            p["s"].append(time.perf_counter() - t0)
            p["ok"].append(any(h.title == f"PMID {q['qid']}" for h in hits))
            for t in timings:
                p["stages"].setdefault(t.stage, []).append((t.seconds, t.n_in, t.n_out))
            p["cross"].append(sum(t.n_in for t in timings if t.stage.endswith("_cross")))
            if isinstance(system, FunnelRetriever):  # where the gold document drops out (untimed)
                p["kept"].append(_gold_kept(system, q["text"], f"PMID {q['qid']}", doc_rows))
    out: dict[str, Any] = {
        name: {"recall": float(np.mean(p["ok"])), "s_per_query": float(np.mean(p["s"])),
               "s_per_query_median": float(np.median(p["s"])), "passages_cross_encoded": float(np.mean(p["cross"])),
               "stages": {s: {"s": float(np.mean([v[0] for v in vals])), "n_in": float(np.mean([v[1] for v in vals])),
                              "n_out": float(np.mean([v[2] for v in vals]))} for s, vals in p["stages"].items()},
               **({"gold_kept": {"clusters": float(np.mean([k[0] for k in p["kept"]])),
                                 "docs": float(np.mean([k[1] for k in p["kept"]])),
                                 "passages": float(np.mean(p["ok"]))}} if p["kept"] else {})}
        for name, p in per.items()}
    base_name = f"flat dense + rerank {cfg.flat_candidates[0]}"
    base = out[base_name]
    for name, r in out.items():
        r["speedup_vs_flat_rerank"] = base["s_per_query"] / r["s_per_query"]
        r["recall_diff_points"] = 100 * (r["recall"] - base["recall"])
        pair = paired_hits(per[name]["ok"], per[base_name]["ok"])  # is the recall difference more than chance?
        r["vs_baseline"] = {"only_this": pair["only_a"], "only_baseline": pair["only_b"], "p_mcnemar": pair["p_mcnemar"]}
    dev = _dev_sweep(cfg, ix, encode, cross, doc_rows,
                     [(q["text"], f"PMID {q['qid']}") for q in qa.queries if q["qid"] not in test_ids])
    return {"dev_sweep": dev,
            "corpus": {"documents": info.manifest["counts"]["documents"], "passages": info.manifest["counts"]["passages"],
                       "clusters": info.manifest["counts"]["clusters"], "distractor_docs": cfg.distractor_docs,
                       "build_s": round(build_s, 1), "index": str(info.path)},
            "queries": len(queries), "systems": out, "baseline": f"flat dense + rerank {cfg.flat_candidates[0]}"}


class BenchANNConfig(StrictModel):
    """faiss IVF / HNSW vs exact search on ``n`` x ``dim`` unit vectors with a cluster structure
    (a mixture of ``centers`` Gaussians), ``queries`` held-out points of the same mixture."""

    n: int = 1_000_000
    dim: int = 384
    centers: int = 2000
    spread: float = 1.0
    queries: int = 1000
    k: int = 10
    factories: list[str] = ["IVF4096,Flat", "HNSW32"]
    nprobe: list[int] = [16, 32]
    ef_search: list[int] = [64, 128]
    threads: int = 2
    seed: int = 0
    results_dir: Path = Path("results/bench_ann")


def _mixture(n: int, dim: int, centers: np.ndarray, spread: float, rng) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        x = centers[rng.integers(len(centers), size=m)] + spread * rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim)
        out[s: s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def bench_ann(cfg: BenchANNConfig) -> dict[str, Any]:
    import faiss

    faiss.omp_set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    centers = rng.standard_normal((cfg.centers, cfg.dim), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    xb = _mixture(cfg.n, cfg.dim, centers, cfg.spread, rng)
    xq = _mixture(cfg.queries, cfg.dim, centers, cfg.spread, rng)
    flat = faiss.IndexFlatIP(cfg.dim)
    flat.add(xb)
    t0 = time.perf_counter()
    _, truth = flat.search(xq, cfg.k)
    flat_s = time.perf_counter() - t0
    res = {"flat": {"search_s": flat_s, "qps": cfg.queries / flat_s, "recall@10": 1.0}}
    del flat
    for fac in cfg.factories:
        index = faiss.index_factory(cfg.dim, fac, faiss.METRIC_INNER_PRODUCT)
        t0 = time.perf_counter()
        if not index.is_trained:
            index.train(xb[rng.choice(cfg.n, size=min(cfg.n, 100_000), replace=False)])
        index.add(xb)
        build_s = time.perf_counter() - t0
        knobs = [("nprobe", p) for p in cfg.nprobe] if "IVF" in fac else [("efSearch", e) for e in cfg.ef_search]
        for knob, v in knobs:
            if knob == "nprobe":
                index.nprobe = v
            else:
                index.hnsw.efSearch = v
            t0 = time.perf_counter()
            _, got = index.search(xq, cfg.k)
            s = time.perf_counter() - t0
            recall = float(np.mean([len(set(g) & set(t)) / cfg.k for g, t in zip(got, truth)]))
            res[f"{fac} {knob}={v}"] = {"build_s": build_s, "search_s": s, "qps": cfg.queries / s,
                                        "recall@10": recall, "speedup_vs_flat": flat_s / s}
        del index
    return {"n": cfg.n, "dim": cfg.dim, "queries": cfg.queries, "results": res}
