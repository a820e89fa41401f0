"""Exact and near-duplicate removal as a Ray Data shuffle (no per-document state on the driver).

Every row gets LSH keys: one exact key (its cleaned text's hash) and one key per MinHash band
(datasketch MinHash over word ``shingle``-grams; the band count ``b`` and rows per band ``r`` are
datasketch's ``MinHashLSH`` choice for ``threshold`` and ``num_perm``). Rows that share a key are
candidate duplicates, exactly as a ``MinHashLSH.query`` hit is. The keys are hash-partitioned by Ray
tasks (a map/reduce shuffle through the object store); inside a partition a vectorised sort finds,
for every key, its earliest row (by ``order``); every later row with that key is a duplicate of it.
(Ray Data's own ``groupby`` shuffle is not used: in Ray 2.60 it fails on the schema-less empty
blocks that a filter leaves behind.)

Rule: a row is dropped when it shares an exact key (``exact duplicate``) or a band key (``near
duplicate``) with an earlier row. This differs from a serial LSH that only indexes kept rows in one
case, a chain A ~ B ~ C where C is close to B but not to A: here C goes too (as a duplicate of B).
Memory: signatures live in the blocks; the shuffle is bounded by the object store (it spills).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import numpy as np
import ray

from rayapp.config import DedupConfig

__all__ = ["text_hash", "add_signatures", "lsh_keys", "find_duplicates", "SerialDeduper"]

_KEY_BITS = 56
_KEY_MASK = np.uint64((1 << _KEY_BITS) - 1)


def text_hash(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()[:16]


def _shingles(text: str, n: int) -> set[bytes]:
    words = text.lower().split()
    if len(words) <= n:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i : i + n]).encode("utf-8") for i in range(len(words) - n + 1)}


@lru_cache(maxsize=None)
def _bands(threshold: float, num_perm: int) -> tuple[int, int]:
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


def add_signatures(batch: dict[str, Any], cfg: DedupConfig) -> dict[str, Any]:
    """Ray Data batch function: adds ``text_hash`` (str) and ``bands`` (int64[b] as bytes; empty
    when ``cfg.near`` is off) columns. The bands hash each slice of ``r`` MinHash values."""
    from datasketch import MinHash

    texts = list(batch["text"])
    batch["text_hash"] = np.array([text_hash(t) for t in texts], dtype=object)
    if not cfg.near:
        batch["bands"] = np.array([b""] * len(texts), dtype=object)
        return batch
    b, r = _bands(cfg.threshold, cfg.num_perm)
    sigs = np.zeros((len(texts), cfg.num_perm), dtype=np.uint64)
    for i, t in enumerate(texts):
        m = MinHash(num_perm=cfg.num_perm, seed=1, scheme="affine32")
        m.update_batch(list(_shingles(t, cfg.shingle)))
        sigs[i] = m.hashvalues
    # Fold each band's r values (< 2**32) into 64 bits with fixed odd multipliers.
    mult = np.random.default_rng(12345).integers(1, 2**63, size=r, dtype=np.uint64) | np.uint64(1)
    bands = np.zeros((len(texts), b), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(b):
            part = sigs[:, j * r : (j + 1) * r]
            h = (part * mult).sum(axis=1, dtype=np.uint64)
            bands[:, j] = h ^ (h >> np.uint64(29))
    batch["bands"] = np.array([row.tobytes() for row in bands.view(np.int64)], dtype=object)
    return batch


def lsh_keys(text_hashes: Any, bands: Any, cfg: DedupConfig) -> np.ndarray:
    """(n, k) uint64 keys of n rows: column 0 the exact key (0 when exact dedup is off), then one
    column per band (none when near dedup is off). The top 8 bits say which column a key is."""
    n = len(text_hashes)
    cols = []
    if cfg.exact:
        cols.append(np.array([int(h[:14], 16) for h in text_hashes], dtype=np.uint64))
    if cfg.near:
        b, _ = _bands(cfg.threshold, cfg.num_perm)
        cols += list(np.frombuffer(b"".join(bands), dtype=np.uint64).reshape(n, b).T)
    keys = np.zeros((n, len(cols)), dtype=np.uint64)
    tag0 = 0 if cfg.exact else 1
    for j, c in enumerate(cols):
        keys[:, j] = (c & _KEY_MASK) | np.uint64((j + tag0) << _KEY_BITS)
    return keys


@ray.remote
def _scatter(block, cfg: DedupConfig, partitions: int) -> list[np.ndarray]:
    """One block of rows -> ``partitions`` int64 arrays of (key, order) pairs, split by key."""
    if block.num_rows == 0:  # filters can leave empty blocks without columns
        empty = [np.zeros((0, 2), dtype=np.int64) for _ in range(partitions)]
        return empty if partitions > 1 else empty[0]
    keys = lsh_keys(block.column("text_hash").to_pylist(), block.column("bands").to_pylist(), cfg)
    order = np.asarray(block.column("order").to_numpy(zero_copy_only=False), dtype=np.int64)
    pairs = np.stack([keys.reshape(-1).view(np.int64), np.repeat(order, keys.shape[1])], axis=1)
    part = (keys.reshape(-1) % np.uint64(partitions)).astype(np.int64)
    out = [pairs[part == i] for i in range(partitions)]
    return out if partitions > 1 else out[0]


@ray.remote
def _later_members(*chunks: np.ndarray) -> np.ndarray:
    """One partition of (key, order) pairs -> (order, earliest order, exact) for every row that
    shares a key with an earlier row."""
    pairs = np.concatenate(chunks) if chunks else np.zeros((0, 2), dtype=np.int64)
    key, order = pairs[:, 0], pairs[:, 1]
    idx = np.lexsort((order, key))
    key, order = key[idx], order[idx]
    start = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, dtype=bool)
    first = order[np.maximum.accumulate(np.where(start, np.arange(len(key)), 0))]
    later = ~start & (order != first)
    exact = (key.view(np.uint64) >> np.uint64(_KEY_BITS)) == 0
    return np.stack([order[later], first[later], exact[later].astype(np.int64)], axis=1)


def find_duplicates(ds, cfg: DedupConfig, partitions: int = 16) -> dict[int, tuple[str, int]]:
    """``{dropped order: (reason, earlier order)}`` over a Ray Dataset with ``order`` (int64,
    unique), ``text_hash`` and ``bands`` columns (from :func:`add_signatures`).

    A hash shuffle in Ray tasks: each block scatters its (key, order) pairs into ``partitions``
    objects, one task per partition sorts them. An exact match wins over a near one, then the
    earliest partner. The driver holds only the result (three ints per duplicate)."""
    if not (cfg.exact or cfg.near):
        return {}
    blocks = ds.select_columns(["order", "text_hash", "bands"]).to_arrow_refs()
    scattered = [_scatter.options(num_returns=partitions).remote(b, cfg, partitions) for b in blocks]
    if partitions == 1:
        scattered = [[s] for s in scattered]
    found = ray.get([_later_members.remote(*[s[i] for s in scattered]) for i in range(partitions)])
    rows = np.concatenate(found) if found else np.zeros((0, 3), dtype=np.int64)
    # Best candidate first per dropped row: exact (1) before near (0), then the earliest partner.
    rows = rows[np.lexsort((rows[:, 1], -rows[:, 2], rows[:, 0]))]
    firsts = np.r_[True, rows[1:, 0] != rows[:-1, 0]] if len(rows) else np.zeros(0, dtype=bool)
    return {int(o): ("exact duplicate" if e else "near duplicate", int(p)) for o, p, e in rows[firsts]}


class SerialDeduper:
    """The same rule in one process (a dict from key to its first row), for baselines and checks."""

    def __init__(self, cfg: DedupConfig):
        self.cfg, self.first = cfg, {}

    def check(self, doc_id: str, thash: str, bands: bytes) -> tuple[str, str] | None:
        """None if no earlier row shares a key with this one, else ``(reason, earlier doc_id)``."""
        keys = lsh_keys([thash], [bands], self.cfg)[0]
        hits = [(j, self.first[k]) for j, k in enumerate(keys.tolist()) if k in self.first]
        for k in keys.tolist():
            self.first.setdefault(k, doc_id)
        if not hits:
            return None
        j, partner = hits[0]
        return ("exact duplicate" if j == 0 and self.cfg.exact else "near duplicate"), partner
