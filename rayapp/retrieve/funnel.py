"""FunnelRAG: coarse-to-fine retrieval (Zhao et al. 2024, arXiv 2410.10293), and its flat baselines.

The funnel narrows the candidate set while the unit gets finer and the model stronger:

1. **clusters** (documents grouped up to S tokens): BM25 over each cluster's text keeps ``clusters``
   (``cluster_ranker: bm25``, the paper's; ``dense`` ranks by the cosine to the mean of a cluster's
   passage vectors, ``hybrid`` fuses both rankings by reciprocal rank);
2. **documents** of those clusters: the pre-ranker (mid capacity: the bi-encoder) keeps ``docs``;
3. **passages** of those documents: the post-ranker (high capacity: the cross-encoder) keeps
   ``passages``.

"Later chunking": the earlier stages never look at passages; the passages of a kept document are
the corpus job's chunks of it (the same deterministic chunker that a query-time split would run,
done once at build time), so their ids are the corpus's passage ids. When BM25 matches no cluster
(no query term is indexed) every cluster goes on to the pre-ranker.

Rankers are picked by name from :data:`SCORERS` (a dict filled by :func:`register_scorer`); each
scores rows of one unit kind (``doc`` or ``passage``) for a query. :func:`rollup_scores` is the
local-to-global roll-up that turns passage scores into document scores for distillation
(:mod:`rayapp.retrieve.l2g`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional, Sequence

import numpy as np

from rayapp._internal.timing import Timings
from rayapp.config import FunnelConfig
from rayapp.index import LoadedIndex
from rayapp.types import Hit, StageTiming
from rayapp._internal.registry import registrar

__all__ = ["SCORERS", "register_scorer", "ScoringContext", "FunnelRetriever", "FunnelResult", "FlatRetriever",
           "rollup_scores", "top_rows", "passage_hits"]

Unit = Literal["doc", "passage"]
Scorer = Callable[["ScoringContext", str, Optional[np.ndarray], Unit, Sequence[int]], np.ndarray]
SCORERS: dict[str, Scorer] = {}


#: Add a ranker under ``name`` (``pre_ranker: name`` / ``post_ranker: name`` in FunnelConfig).
register_scorer = registrar(SCORERS, "scorer")


@dataclass
class ScoringContext:
    """What rankers read: the index, the query encoder, and the cross-encoder when one is used."""

    index: LoadedIndex
    encode: Optional[Callable[[str], np.ndarray]] = None
    cross: Any = None  # rayapp.rerank.CrossEncoder
    batch_size: int = 32
    alpha: float = 0.5  # the roll-up's weight of the best passage (``dense_rollup``)

    def texts(self, unit: Unit, rows: Sequence[int]) -> list[str]:
        src = self.index.doc_texts if unit == "doc" else self.index.texts
        return [src[r] for r in rows]


@register_scorer("dense")
def dense_scorer(ctx: ScoringContext, query: str, qvec: Optional[np.ndarray], unit: Unit,
                 rows: Sequence[int]) -> np.ndarray:
    """Cosine of the query's vector and each unit's stored vector (documents: their own vectors)."""
    mat = ctx.index.doc_vectors if unit == "doc" else ctx.index.vectors
    return np.asarray(mat[np.asarray(rows, dtype=np.int64)], dtype=np.float32) @ qvec


@register_scorer("dense_rollup")
def dense_rollup_scorer(ctx: ScoringContext, query: str, qvec: Optional[np.ndarray], unit: Unit,
                        rows: Sequence[int]) -> np.ndarray:
    """Documents: FunnelRAG's local-to-global roll-up of the bi-encoder's passage scores,
    S(d) = alpha * max_{p in d} cos(q, p) + (1 - alpha) * mean_{p in d} cos(q, p), over the stored
    passage vectors (a document is not judged by one vector of its first ``max_seq_length`` tokens);
    passages: their cosine, as ``dense``."""
    if unit == "passage":
        return dense_scorer(ctx, query, qvec, unit, rows)
    ix = ctx.index
    owner = [r for r in rows for _ in ix.doc_passages[r]]
    prow = np.asarray([p for r in rows for p in ix.doc_passages[r]], dtype=np.int64)
    s = np.asarray(ix.vectors[prow], dtype=np.float32) @ qvec if len(prow) else np.zeros(0, np.float32)
    rolled = rollup_scores(s, owner, ctx.alpha)
    return np.asarray([rolled.get(r, -np.inf) for r in rows], dtype=np.float32)


@register_scorer("cross")
def cross_scorer(ctx: ScoringContext, query: str, qvec: Optional[np.ndarray], unit: Unit,
                 rows: Sequence[int]) -> np.ndarray:
    """The cross-encoder's logit for (query, unit text); long documents are truncated."""
    if ctx.cross is None:
        raise ValueError("the 'cross' ranker needs a cross-encoder (FunnelConfig.reranker)")
    return ctx.cross.score(query, ctx.texts(unit, rows), ctx.batch_size)


def rollup_scores(passage_scores: Sequence[float], passage_doc: Sequence[Any], alpha: float) -> dict[Any, float]:
    """FunnelRAG's local-to-global roll-up of passage scores to their document:
    S(d) = alpha * max_{p in d} s(p) + (1 - alpha) * mean_{p in d} s(p).
    ``passage_doc[i]`` is passage i's document; returns ``{document: S(d)}`` in first-seen order."""
    s = np.asarray(passage_scores, dtype=np.float64)
    groups: dict[Any, list[int]] = {}
    for i, d in enumerate(passage_doc):
        groups.setdefault(d, []).append(i)
    return {d: float(alpha * s[ix].max() + (1 - alpha) * s[ix].mean()) for d, ix in groups.items()}


def top_rows(rows: Sequence[int], scores: np.ndarray, k: Optional[int]) -> tuple[list[int], np.ndarray]:
    """Rows and scores sorted best first (ties: lower row first), cut to ``k`` (None keeps all)."""
    rows = np.asarray(rows, dtype=np.int64)
    order = np.lexsort((rows, -np.asarray(scores, dtype=np.float64)))
    order = order[:k] if k is not None else order
    return rows[order].tolist(), np.asarray(scores)[order]


@dataclass
class FunnelResult:
    clusters: list[int]
    docs: list[int]
    doc_scores: np.ndarray
    passages: list[int]
    passage_scores: np.ndarray
    timings: list[StageTiming] = field(default_factory=list)


def _context(index: LoadedIndex, cfg_reranker: Optional[str], max_length: int, batch_size: int,
             encode: Optional[Callable[[str], np.ndarray]], cross) -> ScoringContext:
    if cross is None and cfg_reranker:
        from rayapp.rerank import CrossEncoder

        cross = CrossEncoder.from_pretrained(cfg_reranker, max_length)
    return ScoringContext(index, encode, cross, batch_size)


def passage_hits(index: LoadedIndex, rows: Sequence[int], scores: np.ndarray, stage: str) -> list[Hit]:
    return [Hit(id=index.ids[r], kind="passage", score=float(s), stage=stage, text=index.texts[r],
                title=index.titles[r], doc_id=index.passage_doc_ids[r]) for r, s in zip(rows, scores)]


class FunnelRetriever:
    """Cluster BM25 -> document pre-ranker -> passage post-ranker over a funnel index.

    ``cross`` may be given (an already loaded :class:`rayapp.rerank.CrossEncoder`); otherwise it is
    loaded from ``cfg.reranker`` when a stage uses it. ``remote_post``: the caller runs stage 3
    (:meth:`coarse` then its own scores), so the post-ranker is not loaded here."""

    def __init__(self, index: LoadedIndex, cfg: FunnelConfig, encode: Optional[Callable[[str], np.ndarray]] = None,
                 cross=None, remote_post: bool = False):
        if not index.funnel:
            raise ValueError(f"index {index.path} was built without funnel: true; rebuild it with "
                             "index.funnel: true to use the funnel")
        dense = [r for r in (cfg.pre_ranker, cfg.post_ranker) if r.startswith("dense")]
        dense += [f"{cfg.cluster_ranker} cluster"] if cfg.cluster_ranker != "bm25" else []
        if dense and encode is None:
            raise ValueError(f"the {dense[0]!r} ranker needs a query encoder")
        self.needs_query_vector = bool(dense)
        self.index, self.cfg = index, cfg
        # with remote_post the caller scores stage 3 itself (a Serve post-ranker deployment)
        local_cross = cfg.pre_ranker == "cross" or (cfg.post_ranker == "cross" and not remote_post)
        self.ctx = _context(index, cfg.reranker if local_cross else None, cfg.reranker_max_length,
                            cfg.rerank_batch_size, encode, cross)
        self.ctx.alpha = cfg.alpha
        self.pre, self.post = SCORERS[cfg.pre_ranker], SCORERS[cfg.post_ranker]
        self._centroids: Optional[np.ndarray] = None

    def centroids(self) -> np.ndarray:
        """Each cluster's unit-length mean of its passages' stored vectors (computed once)."""
        if self._centroids is None:
            ix = self.index
            doc_cluster = np.zeros(len(ix.document_ids), dtype=np.int64)
            for c, docs in enumerate(ix.cluster_docs):
                doc_cluster[docs] = c
            cent = np.zeros((len(ix.cluster_ids), ix.vectors.shape[1]), dtype=np.float32)
            np.add.at(cent, doc_cluster[ix.passage_doc], np.asarray(ix.vectors, dtype=np.float32))
            self._centroids = cent / np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
        return self._centroids

    def rank_clusters(self, query: str, qvec: Optional[np.ndarray], k: int) -> list[int]:
        """Stage 1: the top ``k`` clusters by ``cluster_ranker``. ``hybrid`` is reciprocal-rank
        fusion, S(c) = 1 / (60 + rank_bm25(c)) + 1 / (60 + rank_dense(c)) over each ranking's top
        4k (Cormack et al. 2009). An empty list: BM25 matched nothing (``bm25`` only)."""
        how = self.cfg.cluster_ranker
        if how == "bm25":
            return [c for c, _ in self.index.search_clusters(query, k)]
        dense = top_rows(range(len(self.index.cluster_ids)), self.centroids() @ qvec, 4 * k if how == "hybrid" else k)[0]
        if how == "dense":
            return dense
        fused: dict[int, float] = {}
        for ranking in (dense, [c for c, _ in self.index.search_clusters(query, 4 * k)]):
            for r, c in enumerate(ranking):
                fused[c] = fused.get(c, 0.0) + 1.0 / (60 + r)
        return top_rows(list(fused), np.array([fused[c] for c in fused]), k)[0]

    def coarse(self, query: str, clusters: Optional[int] = -1, docs: Optional[int] = -1):
        """Stages 1-2: (timings, query vector, kept clusters, kept documents, their scores, the
        candidate passages of the kept documents). Counts: -1 takes the config's, None keeps all."""
        cfg, ix, t = self.cfg, self.index, Timings()
        n_c = cfg.clusters if clusters == -1 else clusters
        n_d = cfg.docs if docs == -1 else docs
        qvec = None
        if self.needs_query_vector:
            with t.stage("encode_query", n_in=1) as row:
                qvec = np.asarray(self.ctx.encode(query), dtype=np.float32).reshape(-1)
                row.n_out = 1
        with t.stage(f"clusters_{cfg.cluster_ranker}", n_in=len(ix.cluster_ids)) as row:
            hits = self.rank_clusters(query, qvec, n_c) if n_c is not None else []
            kept_c = hits or list(range(len(ix.cluster_ids)))  # None or no BM25 match: all
            row.n_out = len(kept_c)
        cand_d = [d for c in kept_c for d in ix.cluster_docs[c]]
        with t.stage(f"docs_{cfg.pre_ranker}", n_in=len(cand_d)) as row:
            kept_d, d_scores = top_rows(cand_d, self.pre(self.ctx, query, qvec, "doc", cand_d), n_d)
            row.n_out = len(kept_d)
        cand_p = [p for d in kept_d for p in ix.doc_passages[d]]
        return t, qvec, kept_c, kept_d, d_scores, cand_p

    def run(self, query: str, clusters: Optional[int] = -1, docs: Optional[int] = -1,
            passages: Optional[int] = -1) -> FunnelResult:
        """Every stage's survivors; a count of -1 takes the config's, None keeps everything."""
        t, qvec, kept_c, kept_d, d_scores, cand_p = self.coarse(query, clusters, docs)
        n_p = self.cfg.passages if passages == -1 else passages
        with t.stage(f"passages_{self.cfg.post_ranker}", n_in=len(cand_p)) as row:
            kept_p, p_scores = top_rows(cand_p, self.post(self.ctx, query, qvec, "passage", cand_p), n_p)
            row.n_out = len(kept_p)
        return FunnelResult(kept_c, kept_d, d_scores, kept_p, p_scores, t.rows)

    def retrieve(self, query: str, top_k: Optional[int] = None) -> tuple[list[Hit], list[StageTiming]]:
        r = self.run(query, passages=top_k or self.cfg.passages)
        return passage_hits(self.index, r.passages, r.passage_scores, "funnel"), r.timings


class FlatRetriever:
    """The flat baselines over all passages: ``bm25``, ``dense``, or ``dense`` top ``candidates``
    reordered by the post-ranker (``dense_rerank``), with the same Hit/StageTiming contract."""

    def __init__(self, index: LoadedIndex, mode: Literal["bm25", "dense", "dense_rerank"],
                 encode: Optional[Callable[[str], np.ndarray]] = None, cross=None, candidates: int = 100,
                 reranker: Optional[str] = None, max_length: int = 256, batch_size: int = 32):
        if mode not in ("bm25", "dense", "dense_rerank"):
            raise ValueError(f"flat retriever: mode must be bm25, dense or dense_rerank, not {mode!r}")
        if mode != "bm25" and encode is None:
            raise ValueError(f"flat retriever: mode {mode} needs a query encoder")
        self.index, self.mode, self.candidates = index, mode, candidates
        self.ctx = _context(index, reranker if mode == "dense_rerank" else None, max_length, batch_size, encode, cross)
        if mode == "dense_rerank" and self.ctx.cross is None:
            raise ValueError("flat retriever: dense_rerank needs a cross-encoder")

    def retrieve(self, query: str, top_k: int = 4) -> tuple[list[Hit], list[StageTiming]]:
        ix, t = self.index, Timings()
        if self.mode == "bm25":
            with t.stage("bm25", n_in=len(ix)) as row:
                found = ix.search_bm25(query, top_k)
                row.n_out = len(found)
        else:
            with t.stage("encode_query", n_in=1) as row:
                qvec = np.asarray(self.ctx.encode(query), dtype=np.float32).reshape(-1)
                row.n_out = 1
            n = self.candidates if self.mode == "dense_rerank" else top_k
            with t.stage("dense", n_in=len(ix)) as row:
                found = ix.search_dense(qvec, n)
                row.n_out = len(found)
            if self.mode == "dense_rerank":
                with t.stage("passages_cross", n_in=len(found)) as row:
                    rows = [r for r, _ in found]
                    rows, scores = top_rows(rows, cross_scorer(self.ctx, query, qvec, "passage", rows), top_k)
                    found = list(zip(rows, scores))
                    row.n_out = len(found)
        found = found[:top_k]
        return passage_hits(ix, [r for r, _ in found], np.array([s for _, s in found]), f"flat_{self.mode}"), t.rows
