"""Retrieval metrics (pytrec_eval, the C implementation of trec_eval) and embedder evaluation.

``qrels`` ``{qid: {doc_id: grade}}``, ``run`` ``{qid: {doc_id: score}}``. Metrics are averaged over
the queries of ``qrels`` that have at least one relevant document (trec_eval's convention; a query
absent from ``run`` scores 0).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["evaluate_run", "dense_run", "candidate_run", "evaluate_embedder", "paired_hits"]


def evaluate_run(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
                 ks: Sequence[int] = (10, 100)) -> dict[str, float]:
    """nDCG@10, MAP, MRR and Recall@k (for each k in ``ks``) with pytrec_eval."""
    import pytrec_eval

    judged = {q: {d: int(g) for d, g in rel.items()} for q, rel in qrels.items() if any(g > 0 for g in rel.values())}
    if not judged:
        raise ValueError("evaluate_run: no query has a relevant document")
    full_run = {q: {d: float(s) for d, s in run.get(q, {}).items()} for q in judged}
    measures = {"ndcg_cut.10", "map", "recip_rank", "recall." + ",".join(str(k) for k in ks)}
    per_query = pytrec_eval.RelevanceEvaluator(judged, measures).evaluate(full_run)
    mean = lambda key: float(np.mean([m.get(key, 0.0) for m in per_query.values()])) if per_query else 0.0  # noqa: E731
    out = {"ndcg@10": mean("ndcg_cut_10"), "map": mean("map"), "mrr": mean("recip_rank")}
    out.update({f"recall@{k}": mean(f"recall_{k}") for k in ks})
    out["queries"] = len(judged)
    return out


def paired_hits(a: Sequence[bool], b: Sequence[bool]) -> dict[str, Any]:
    """Two systems' per-query hits on the same queries: how many only ``a`` got (``only_a``), only
    ``b`` got (``only_b``), and the exact two-sided McNemar p-value, the binomial probability of a
    split at least that uneven among the n = only_a + only_b discordant queries,
    p = min(1, 2 * sum_{i <= min(only_a, only_b)} C(n, i) / 2^n) (McNemar 1947)."""
    from math import comb

    if len(a) != len(b):
        raise ValueError(f"paired_hits: {len(a)} hits vs {len(b)}: both systems must see the same queries")
    only_a = sum(bool(x) and not bool(y) for x, y in zip(a, b))
    only_b = sum(bool(y) and not bool(x) for x, y in zip(a, b))
    n = only_a + only_b
    p = min(1.0, 2 * sum(comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2 ** n) if n else 1.0
    return {"only_a": only_a, "only_b": only_b, "p_mcnemar": p}


def dense_run(encode_queries: Callable[[list[str]], np.ndarray], encode_docs: Callable[[list[str]], np.ndarray],
              queries: list[dict[str, Any]], docs: list[dict[str, Any]], k: int = 100) -> dict[str, dict[str, float]]:
    """Top-``k`` documents of every query by inner product (faiss flat index over unit vectors)."""
    import faiss

    dv = np.ascontiguousarray(encode_docs([d["text"] for d in docs]), dtype=np.float32)
    qv = np.ascontiguousarray(encode_queries([q["text"] for q in queries]), dtype=np.float32)
    index = faiss.IndexFlatIP(dv.shape[1])
    index.add(dv)
    scores, ids = index.search(qv, min(k, len(docs)))
    return {q["qid"]: {docs[j]["doc_id"]: float(s) for s, j in zip(sc, ix) if j >= 0}
            for q, sc, ix in zip(queries, scores, ids)}


def candidate_run(encode_queries: Callable[[list[str]], np.ndarray], encode_docs: Callable[[list[str]], np.ndarray],
                  queries: list[dict[str, Any]], docs: list[dict[str, Any]],
                  qrels: dict[str, dict[str, int]]) -> dict[str, dict[str, float]]:
    """Answer selection (TREC-QA): every query ranks only its own judged candidates."""
    text = {d["doc_id"]: d["text"] for d in docs}
    ids = sorted({d for rel in qrels.values() for d in rel})
    dv = dict(zip(ids, encode_docs([text[d] for d in ids])))
    qv = encode_queries([q["text"] for q in queries])
    return {q["qid"]: {d: float(qv[i] @ dv[d]) for d in qrels.get(q["qid"], {})} for i, q in enumerate(queries)}


def evaluate_embedder(model_path: str, qa, instruction: str = "", mode: str = "corpus", batch_size: int = 64,
                      dim: int | None = None) -> dict[str, float]:
    """Metrics of the embedder folder ``model_path`` on a :class:`rayapp.data.sets.QASet`:
    ``mode="corpus"`` retrieves from all documents, ``"candidates"`` ranks each query's own."""
    from rayapp.embed import Embedder, format_query

    m = Embedder.from_pretrained(model_path)
    enc_q = lambda ts: m.encode([format_query(t, instruction) for t in ts], batch_size, 64, dim)  # noqa: E731
    enc_d = lambda ts: m.encode(ts, batch_size, 256, dim)  # noqa: E731
    if mode == "candidates":
        run = candidate_run(enc_q, enc_d, qa.queries, qa.docs, qa.qrels)
    elif mode == "corpus":
        run = dense_run(enc_q, enc_d, qa.queries, qa.docs)
    else:
        raise ValueError(f"mode must be 'corpus' or 'candidates', not {mode!r}")
    return evaluate_run(qa.qrels, run)
