"""Retrieve stage: first-stage retrieval over a loaded index.

:class:`HybridRetriever` runs BM25 and dense search and fuses them with reciprocal rank fusion
(Cormack et al., 2009): ``score(p) = sum over lists L containing p of 1 / (rrf_k + rank_L(p))``,
ranks from 1. With one list switched off it is that list's ranking. The funnel (cluster BM25 ->
document pre-ranker -> passage post-ranker) builds on the same :class:`~rayapp.types.Hit` contract.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional

import numpy as np

from rayapp._internal.timing import Timings
from rayapp.config import RetrieverConfig
from rayapp.index import LoadedIndex
from rayapp.types import Hit, StageTiming

__all__ = ["HybridRetriever", "rrf_fuse", "merge_hits"]


def rrf_fuse(lists: list[list[int]], rrf_k: int) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of ranked row lists; ties broken by the row number."""
    scores: dict[int, float] = {}
    for ranked in lists:
        for rank, row in enumerate(ranked, start=1):
            scores[row] = scores.get(row, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def merge_hits(lists: list[list[Hit]], top_k: int, rrf_k: int = 60) -> list[Hit]:
    """Ranked hit lists from separate indexes (a main index and its deltas) as one list, by
    reciprocal rank fusion over the lists (ranks from 1): a hit's score becomes
    ``sum over lists of 1 / (rrf_k + rank)``, since scores from different indexes are not comparable.
    A passage id in several lists is kept once (its first list's text). One list is returned as is."""
    if len(lists) == 1:
        return lists[0][:top_k]
    first: list[Hit] = []
    row_of: dict[str, int] = {}
    rows = []
    for hits in lists:
        for h in hits:
            if h.id not in row_of:
                row_of[h.id] = len(first)
                first.append(h)
        rows.append([row_of[h.id] for h in hits])
    return [dataclasses.replace(first[r], score=s) for r, s in rrf_fuse(rows, rrf_k)[:top_k]]


class HybridRetriever:
    def __init__(self, index: LoadedIndex, cfg: RetrieverConfig, encode: Callable[[str], np.ndarray]):
        if not (cfg.use_bm25 or cfg.use_dense):
            raise ValueError("retriever: enable at least one of use_bm25, use_dense")
        self.index, self.cfg, self.encode = index, cfg, encode

    def retrieve(self, query: str, top_k: Optional[int] = None,
                 query_vec: Optional[np.ndarray] = None) -> tuple[list[Hit], list[StageTiming]]:
        """Top ``top_k`` passages and the stage timings. ``query_vec``: the query's vector when the
        caller has encoded it already; the "dense" stage then times only the search."""
        vecs = None if query_vec is None else np.asarray(query_vec).reshape(1, -1)
        return self.retrieve_many([query], [top_k or self.cfg.top_k], vecs)[0]

    def retrieve_many(self, queries: list[str], top_ks: list[int],
                      query_vecs: Optional[np.ndarray] = None) -> list[tuple[list[Hit], list[StageTiming]]]:
        """:meth:`retrieve` of several queries, BM25 and dense each searched once for all of them
        (the served Retriever's batch of concurrent calls): one result per query, the same as alone.
        ``query_vecs``: (n, d), when the caller has encoded the queries. Each query's timings give
        the shared searches' time (what it waited for) with its own candidate counts."""
        n, t, lists = self.cfg.candidates, Timings(), []
        if self.cfg.use_bm25:
            with t.stage("bm25", n_in=len(self.index)):
                lists.append([[r for r, _ in found] for found in self.index.search_bm25_many(queries, n)])
        if self.cfg.use_dense:
            with t.stage("dense", n_in=len(self.index)):
                vecs = self.encode(list(queries)) if query_vecs is None else query_vecs
                vecs = np.asarray(vecs, dtype=np.float32).reshape(len(queries), -1)
                lists.append([[r for r, _ in found] for found in self.index.search_dense_many(vecs, n)])
        out, ix = [], self.index
        for i, top_k in enumerate(top_ks):
            mine = [lst[i] for lst in lists]
            rows = [dataclasses.replace(row, n_out=len(found)) for row, found in zip(t.rows, mine)]
            t0 = time.perf_counter()
            fused = rrf_fuse(mine, self.cfg.rrf_k)[:top_k]
            rows.append(StageTiming("fuse", round(time.perf_counter() - t0, 6), sum(map(len, mine)), len(fused)))
            hits = [Hit(id=ix.ids[r], kind="passage", score=sc, stage="hybrid", text=ix.texts[r],
                        title=ix.titles[r], doc_id=ix.passage_doc_ids[r]) for r, sc in fused]
            out.append((hits, rows))
        return out
