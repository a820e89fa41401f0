"""Exact and near-duplicate removal.

Exact: documents whose cleaned text hashes equal. Near: MinHash signatures (datasketch) over word
``shingle``-grams, indexed in a MinHash LSH for estimated Jaccard similarity >= ``threshold``. The
signatures are computed where the rows are (a Ray Data ``map_batches``); the driver streams through
them once, in source order, and keeps the first document of every duplicate group. The driver holds
the LSH index (about ``num_perm`` x 8 bytes per kept document), never the texts.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Iterator

import numpy as np

from rayapp.config import DedupConfig


def text_hash(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()[:16]


def _shingles(text: str, n: int) -> set[bytes]:
    words = text.lower().split()
    if len(words) <= n:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i : i + n]).encode("utf-8") for i in range(len(words) - n + 1)}


def add_minhash(batch: dict[str, Any], cfg: DedupConfig) -> dict[str, Any]:
    """Ray Data batch function: adds ``text_hash`` and ``minhash`` (uint64[num_perm]) columns."""
    from datasketch import MinHash

    texts = list(batch["text"])
    batch["text_hash"] = np.array([text_hash(t) for t in texts])
    sigs = np.zeros((len(texts), cfg.num_perm), dtype=np.uint64)
    if cfg.near:
        for i, t in enumerate(texts):
            m = MinHash(num_perm=cfg.num_perm, seed=1, scheme="affine32")
            m.update_batch(list(_shingles(t, cfg.shingle)))
            sigs[i] = m.hashvalues
    batch["minhash"] = list(sigs)
    return batch


class DuplicateFinder:
    """Streams (key, text_hash, minhash) rows in source order; says which rows duplicate an earlier one."""

    def __init__(self, cfg: DedupConfig):
        from datasketch import MinHashLSH

        self.cfg = cfg
        self.seen: dict[str, str] = {}
        self.lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm) if cfg.near else None

    def check(self, key: str, thash: str, sig: np.ndarray) -> tuple[str, str] | None:
        """None if the row is kept, else ``(reason, kept_key)``."""
        from datasketch import MinHash

        if self.cfg.exact and thash in self.seen:
            return "exact duplicate", self.seen[thash]
        if self.lsh is not None:
            m = MinHash(num_perm=self.cfg.num_perm, seed=1, hashvalues=np.asarray(sig, dtype=np.uint64),
                        scheme="affine32")
            hits = self.lsh.query(m)
            if hits:
                return "near duplicate", min(hits)
            self.lsh.insert(key, m)
        self.seen.setdefault(thash, key)
        return None


def find_duplicates(rows: Iterable[dict[str, Any]], cfg: DedupConfig) -> Iterator[tuple[str, str, str]]:
    """(dropped key, reason, kept key) for every duplicate among ``rows`` (given in source order)."""
    finder = DuplicateFinder(cfg)
    for r in rows:
        hit = finder.check(r["doc_id"], r["text_hash"], r["minhash"])
        if hit is not None:
            yield r["doc_id"], hit[0], hit[1]
