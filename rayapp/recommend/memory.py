"""RaSeRec's memory bank and fusion (arXiv 2412.18378), in numpy and faiss only (a serving replica that runs
the models with ONNX Runtime imports no torch).

(sequence representation, target-item embedding) for every training prefix, with its user and
prefix length, in a faiss IVF index (inner product on L2-normalised keys). New memories can be
appended online (no retraining); :meth:`MemoryBank.search` never returns a memory of the querying
user unless it comes from a strictly shorter prefix (the user's past). :meth:`MemoryBank.save` and
:meth:`MemoryBank.load` keep a built bank on disk, trained index included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

__all__ = ["MemoryBank", "fuse"]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class MemoryBank:
    def __init__(self, dim: int, nlist: int = 128):
        self.dim, self.nlist = dim, nlist
        self.index = None
        self.keys = np.zeros((0, dim), dtype=np.float32)
        self.values = np.zeros((0, dim), dtype=np.float32)
        self.users = np.zeros(0, dtype=np.int64)
        self.prefix_lens = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.keys)

    def build(self, keys: np.ndarray, values: np.ndarray, users: np.ndarray, prefix_lens: np.ndarray,
              nprobe: int = 16, seed: int = 0) -> "MemoryBank":
        """Index the memories (IVF with ``min(nlist, n // 39)`` lists, trained on them)."""
        import faiss

        k = _unit(keys)
        nlist = max(1, min(self.nlist, len(k) // 39))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(k)
        index.nprobe = min(nprobe, nlist)
        self.index, self._quantizer = index, quantizer
        self.keys = np.zeros((0, self.dim), dtype=np.float32)
        self.values = np.zeros((0, self.dim), dtype=np.float32)
        self.users = np.zeros(0, dtype=np.int64)
        self.prefix_lens = np.zeros(0, dtype=np.int64)
        return self.append(keys, values, users, prefix_lens)

    def append(self, keys: np.ndarray, values: np.ndarray, users: np.ndarray, prefix_lens: np.ndarray) -> "MemoryBank":
        """Add memories online: searchable at once, without retraining the index."""
        if self.index is None:
            raise RuntimeError("MemoryBank.append: build() the bank first")
        k = _unit(keys)
        self.index.add(k)
        self.keys = np.concatenate([self.keys, k])
        self.values = np.concatenate([self.values, np.asarray(values, dtype=np.float32)])
        self.users = np.concatenate([self.users, np.asarray(users, dtype=np.int64)])
        self.prefix_lens = np.concatenate([self.prefix_lens, np.asarray(prefix_lens, dtype=np.int64)])
        return self

    def search(self, queries: np.ndarray, users: Optional[np.ndarray], prefix_lens: Optional[np.ndarray], k: int,
               candidates: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
        """(keys [n, k, d], values [n, k, d]) of the top ``k`` memories per query among the top
        ``candidates`` (default 4k) by inner product, after dropping the querying user's memories
        whose prefix is not strictly shorter than the query's. Missing slots (too few memories
        left) repeat the last kept one."""
        cand = candidates or 4 * k
        _, idx = self.index.search(_unit(queries), min(cand, len(self)))
        out = np.zeros((len(queries), k), dtype=np.int64)
        for r, row in enumerate(idx):
            row = row[row >= 0]
            if users is not None:
                same = self.users[row] == users[r]
                row = row[~same | (self.prefix_lens[row] < prefix_lens[r])]
            if len(row) == 0:
                row = np.array([int(np.argmax(self.keys @ _unit(queries[r: r + 1])[0]))])
            row = row[:k]
            out[r] = np.concatenate([row, np.full(k - len(row), row[-1])])
        return self.keys[out], self.values[out]

    def save(self, folder: Path) -> None:
        """Write ``bank.faiss`` (the trained index with every memory) and ``bank.npz`` to ``folder``."""
        import faiss

        if self.index is None:
            raise RuntimeError("MemoryBank.save: build() the bank first")
        faiss.write_index(self.index, str(Path(folder) / "bank.faiss"))
        np.savez(Path(folder) / "bank.npz", keys=self.keys, values=self.values, users=self.users,
                 prefix_lens=self.prefix_lens)

    @classmethod
    def load(cls, folder: Path) -> "MemoryBank":
        """The bank :meth:`save` wrote: the same index (same lists, same ``nprobe``), searchable and
        appendable at once."""
        import faiss

        index = faiss.read_index(str(Path(folder) / "bank.faiss"))
        with np.load(Path(folder) / "bank.npz") as z:
            arrays = {k: z[k] for k in ("keys", "values", "users", "prefix_lens")}
        if index.ntotal != len(arrays["keys"]):
            raise ValueError(f"MemoryBank.load: {folder} has {index.ntotal} indexed memories but "
                             f"{len(arrays['keys'])} stored ones")
        bank = cls(index.d, getattr(index, "nlist", 1))
        bank.index = index
        bank.keys, bank.values = arrays["keys"], arrays["values"]
        bank.users, bank.prefix_lens = arrays["users"], arrays["prefix_lens"]
        return bank


def fuse(h, h_s, h_t, alpha: float = 0.5, beta: float = 1.0):
    """RaSeRec's fusion h~ = alpha h + (1 - alpha)(beta h_s + (1 - beta) h_t); alpha = 1 is the
    backbone. Arrays or tensors alike (training runs it on tensors, the ONNX service on arrays)."""
    if alpha == 1.0:
        return h
    return alpha * h + (1 - alpha) * (beta * h_s + (1 - beta) * h_t)
