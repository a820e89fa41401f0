"""A dense index split into N shards held by Ray actors: scatter the query, gather, merge top-k.

Shard i holds the contiguous rows ``[start_i, stop_i)`` of an index version's ``embeddings.npy``
(memory-mapped, so the actors on one node share the page cache) in its own faiss index built with
the version's factory string (IVF shards are trained on their own rows). A search sends the query
vectors to every shard at once, each returns its top ``k`` with global row numbers, and the merge
keeps the best ``k`` by score (ties: the lower row). With a ``Flat`` factory the result equals the
unsharded index's exactly (a test); approximate factories give each shard's approximation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

__all__ = ["ShardedIndex", "merge_topk"]


def merge_topk(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard (scores (Q, k_i), global rows (Q, k_i)) into the best ``k`` per query;
    missing results (row -1) sort last. Returns (scores (Q, k), rows (Q, k))."""
    scores = np.concatenate([s for s, _ in parts], axis=1)
    rows = np.concatenate([r for _, r in parts], axis=1)
    key_s = np.where(rows < 0, -np.inf, scores)
    out_s = np.full((scores.shape[0], k), -np.inf, dtype=np.float32)
    out_r = np.full((scores.shape[0], k), -1, dtype=np.int64)
    for q in range(scores.shape[0]):
        order = np.lexsort((rows[q], -key_s[q]))[:k]
        n = len(order)
        out_s[q, :n], out_r[q, :n] = scores[q, order], rows[q, order]
    return out_s, out_r


class _Shard:
    def __init__(self, vectors_path: str, start: int, stop: int, factory: str, nprobe: int):
        import faiss

        vecs = np.ascontiguousarray(np.load(vectors_path, mmap_mode="r")[start:stop], dtype=np.float32)
        self.start = start
        self.index = faiss.index_factory(vecs.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        if not self.index.is_trained:
            self.index.train(vecs)
        self.index.add(vecs)
        if hasattr(self.index, "nprobe"):
            self.index.nprobe = nprobe

    def size(self) -> int:
        return self.index.ntotal

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, self.index.ntotal))
        return scores, np.where(rows >= 0, rows + self.start, -1)


class ShardedIndex:
    """``shards`` Ray actors over one index version's vectors. Ray must be initialised."""

    def __init__(self, index_path: str | Path, shards: int, factory: Optional[str] = None,
                 num_cpus: float = 0.25, nprobe: Optional[int] = None):
        import ray

        from rayapp._internal.artifacts import read_manifest

        path = Path(index_path)
        manifest = read_manifest(path)
        if manifest is None:
            raise FileNotFoundError(f"no finished index at {path} (manifest.json missing)")
        n = int(manifest["counts"]["passages"])
        if not 1 <= shards <= n:
            raise ValueError(f"shards: {shards} must be between 1 and the number of passages ({n})")
        cfg = manifest["config"]
        bounds = np.linspace(0, n, shards + 1).astype(int)
        actor = ray.remote(num_cpus=num_cpus)(_Shard)
        self.bounds = bounds.tolist()
        self.actors = [actor.remote(str(path / "embeddings.npy"), int(a), int(b), factory or cfg["faiss_factory"],
                                    nprobe or cfg.get("nprobe", 8)) for a, b in zip(bounds[:-1], bounds[1:])]
        self.ntotal = sum(ray.get([a.size.remote() for a in self.actors]))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows), each (Q, k): the best ``k`` rows over all shards, best first."""
        import ray

        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        q_ref = ray.put(q)
        return merge_topk(ray.get([a.search.remote(q_ref, k) for a in self.actors]), min(k, self.ntotal))

    def close(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors = []
