"""Benchmark: hard-negative mining + ranking-consistency filtering on PubMedQA and TREC-QA train pairs.

    python -m jobs.bench_pairs --config configs/bench_pairs.yaml
Per set: rows kept / dropped, seconds of each step, and two baselines in the same run:
- negatives: mined (ranks [rank_lo, rank_hi)) vs random corpus texts (vs TREC-QA's annotated
  negatives): mean query-negative cosine and the share inside the embedder's top rank_hi;
- encoding: Ray Data (embed_texts, actor start included) vs direct SentenceTransformer.encode.
Writes results/bench_pairs/bench_pairs.json and .md and prints the ratios.
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any

import numpy as np

from rayapp._internal.jobs import run_job
from rayapp.data.pairs import BenchPairsConfig


def _neg_quality(rows: list[dict[str, Any]], negs: list[list[str]], lookup: dict[str, int], vecs: np.ndarray,
                 top: list[set[str]]) -> tuple[float, float]:
    """(mean query-negative cosine, share of negatives inside the query's top list)."""
    sims, inside, n = 0.0, 0, 0
    for row, ns, t in zip(rows, negs, top):
        if not ns:
            continue
        q = vecs[lookup[row["query"]]]
        sims += float(np.sum(vecs[[lookup[x] for x in ns]] @ q))
        inside += sum(x in t for x in ns)
        n += len(ns)
    return (sims / n if n else float("nan")), (inside / n if n else float("nan"))


def _bench_set(name: str, qa, task: str, domain: str, cfg: BenchPairsConfig) -> dict[str, Any]:
    import torch

    from rayapp.data.pairs import (_needed_texts, _random_fill, _search, encode_texts, qa_pairs,
                                   training_rows_from_vectors)
    from rayapp.models import load_sentence_transformer

    pairs = qa_pairs(qa, task, domain)
    corpus = list(dict.fromkeys(d["text"] for d in qa.docs))
    t0 = time.perf_counter()
    lookup, vecs = encode_texts(_needed_texts(pairs, corpus), cfg.embed)
    ray_s = time.perf_counter() - t0

    torch.set_num_threads(cfg.embed.torch_threads)
    t0 = time.perf_counter()
    model = load_sentence_transformer(cfg.embed.model, cfg.embed.max_seq_length)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    direct = model.encode(list(lookup), batch_size=cfg.embed.batch_size, normalize_embeddings=True,
                          convert_to_numpy=True, show_progress_bar=False)
    direct_s = time.perf_counter() - t0
    max_diff = float(np.max(np.abs(direct - vecs)))

    rows, report = training_rows_from_vectors(pairs, corpus, lookup, vecs, cfg.pairs)
    p = cfg.pairs
    cvecs = vecs[[lookup[t] for t in corpus]]
    ids = _search(vecs[[lookup[r["query"]] for r in rows]], cvecs, min(p.rank_hi, len(corpus)))
    top = [{corpus[j] for j in row_ids if j >= 0} for row_ids in ids]
    rng = random.Random(p.seed)
    rand = [_random_fill(corpus, {r["query"], *r["pos"]}, p.k, rng) for r in rows]
    mined_sim, mined_top = _neg_quality(rows, [r["negs"] for r in rows], lookup, vecs, top)
    rand_sim, rand_top = _neg_quality(rows, rand, lookup, vecs, top)
    out = {
        "set": name, "pairs": report["pairs_in"], "kept": report["kept"], "dropped": report["dropped"],
        "corpus": len(corpus), "encoded_texts": len(lookup),
        "encode_ray_s": round(ray_s, 3), "encode_direct_s": round(direct_s, 3), "direct_load_s": round(load_s, 3),
        "ray_vs_direct_max_abs_diff": max_diff,
        "filter_s": report["seconds"]["filter"], "mine_s": report["seconds"]["mine"],
        "negatives": report["negatives"],
        "mined_sim": mined_sim, "random_sim": rand_sim, "mined_in_top": mined_top, "random_in_top": rand_top,
    }
    if any(pr["neg"] for pr in qa.pairs):  # TREC-QA: annotated negatives of the same question
        given = {pr["query"]: pr["neg"] for pr in qa.pairs}
        g_rows = [r for r in rows if given.get(r["query"])]
        g_top = [t for r, t in zip(rows, top) if given.get(r["query"])]
        out["given_sim"], out["given_in_top"] = _neg_quality(g_rows, [given[r["query"]] for r in g_rows],
                                                             lookup, vecs, g_top)
    return out


def _run(cfg: BenchPairsConfig, _config_path) -> None:
    import ray

    from rayapp._internal.ray_utils import init_ray
    from rayapp.data import SourceError
    from rayapp.data.sets import load_pubmedqa, load_trecqa
    from rayapp.eval import write_report

    try:
        sets = [("pubmedqa-train", load_pubmedqa(cfg.data_dir, "train"), "question-abstract", "biomedical"),
                ("trecqa-train", load_trecqa(cfg.data_dir, "train"), "question-sentence", "news")]
    except FileNotFoundError as e:
        raise SourceError(str(e)) from e
    started = init_ray(cfg.ray)
    try:
        results = [_bench_set(*s, cfg) for s in sets]
    finally:
        if started:
            ray.shutdown()
    p = cfg.pairs
    header = ["set", "pairs", "kept", "dropped", "corpus", "encode Ray Data s", "encode direct s",
              "filter s", "mine s", "cos mined", "cos random", "cos given", f"mined in top {p.rank_hi}",
              f"random in top {p.rank_hi}"]
    table = [[r["set"], r["pairs"], r["kept"], r["dropped"], r["corpus"], r["encode_ray_s"], r["encode_direct_s"],
              r["filter_s"], r["mine_s"], r["mined_sim"], r["random_sim"], r.get("given_sim", "-"),
              r["mined_in_top"], r["random_in_top"]] for r in results]
    notes = (f"k={p.k}, negatives from 0-based ranks [{p.rank_lo}, {p.rank_hi}), rows dropped when the best "
             f"positive ranks >= {p.filter_topk}; embedder {cfg.embed.model}. 'in top' = share of negatives "
             f"inside the query's top {p.rank_hi}. Ray Data encode time includes the actor's start and model load.")
    path = write_report(cfg.results_dir, "bench_pairs", {"config": cfg.model_dump(mode="json"), "results": results},
                        header, table, notes)
    for r in results:
        print(f"{r['set']}: {r['pairs']} pairs -> kept {r['kept']}, dropped {r['dropped']} "
              f"(corpus {r['corpus']}); filter {r['filter_s']:.3f} s, mine {r['mine_s']:.3f} s")
        print(f"  negatives cosine: mined {r['mined_sim']:.3f} vs random {r['random_sim']:.3f} "
              f"(ratio {r['mined_sim'] / r['random_sim']:.2f})"
              + (f", annotated {r['given_sim']:.3f}" if "given_sim" in r else ""))
        print(f"  in top {p.rank_hi}: mined {r['mined_in_top']:.3f} vs random {r['random_in_top']:.3f} "
              f"(ratio {r['mined_in_top'] / max(r['random_in_top'], 1e-9):.1f})")
        print(f"  encode {r['encoded_texts']} texts: Ray Data {r['encode_ray_s']:.2f} s vs direct "
              f"{r['encode_direct_s']:.2f} s (+{r['direct_load_s']:.2f} s load); ratio "
              f"{r['encode_ray_s'] / r['encode_direct_s']:.2f}; max |diff| {r['ray_vs_direct_max_abs_diff']:.1e}")
    print(f"Results: {path}")


def main(argv=None) -> int:
    return run_job("rayapp bench-pairs", BenchPairsConfig, "configs/bench_pairs.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
