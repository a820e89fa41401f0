"""Grouping documents into clusters of at most S tokens (FunnelRAG's retrieval unit, S = 4K).

:func:`pack_groups` splits each group (in source order) into runs whose token sum stays within the
budget; a document over the budget alone is a cluster of its own. :func:`kmeans_groups` makes the
groups from document embeddings with faiss k-means (k = ceil(total tokens / S)) when the source has
no grouping of its own.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from rayapp._internal.hashing import stable_hash


def pack_groups(keys: Sequence[str], doc_ids: Sequence[str], n_tokens: Sequence[int], max_tokens: int) -> list[dict]:
    """Clusters ``{cluster_id, key, doc_ids, n_tokens}`` from per-document group keys (source order)."""
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    out = []
    for key in sorted(groups):
        run: list[int] = []
        total = 0
        part = 0

        def flush() -> None:
            nonlocal run, total, part
            if run:
                ids = [doc_ids[i] for i in run]
                name = key if part == 0 else f"{key}#{part}"
                out.append({"cluster_id": stable_hash("cluster", name, ids), "key": name,
                            "doc_ids": ids, "n_tokens": total})
                part += 1
            run, total = [], 0

        for i in groups[key]:
            if run and total + n_tokens[i] > max_tokens:
                flush()
            run.append(i)
            total += n_tokens[i]
        flush()
    return out


def kmeans_groups(vectors: np.ndarray, n_tokens: Sequence[int], max_tokens: int, iters: int = 20,
                  seed: int = 0) -> list[str]:
    """A group key (``kmeans-<c>``) per document from faiss k-means on its embedding."""
    import faiss

    k = max(1, min(len(vectors), math.ceil(sum(n_tokens) / max_tokens)))
    if k == 1:
        return ["kmeans-0"] * len(vectors)
    km = faiss.Kmeans(vectors.shape[1], k, niter=iters, seed=seed, spherical=True, verbose=False)
    km.train(np.ascontiguousarray(vectors, dtype=np.float32))
    _, assign = km.index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
    return [f"kmeans-{int(c)}" for c in assign[:, 0]]


def tfidf_features(texts: Sequence[str], dim: int = 256, seed: int = 0) -> np.ndarray:
    """Unit-length TF-IDF vectors of ``texts`` (sublinear tf, English stop words dropped) reduced
    to at most ``dim`` dimensions by truncated SVD (latent semantic analysis)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    x = TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=2 if len(texts) > 50 else 1).fit_transform(texts)
    k = min(dim, x.shape[1] - 1, len(texts) - 1)
    if k < 1:
        return np.ones((len(texts), 1), dtype=np.float32)
    v = TruncatedSVD(n_components=k, random_state=seed).fit_transform(x).astype(np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
