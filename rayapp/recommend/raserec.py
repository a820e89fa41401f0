"""RaSeRec (arXiv 2412.18378): retrieval-augmented sequential recommendation over a frozen SASRec.

- :class:`MemoryBank`: (sequence representation, target-item embedding) for every training prefix,
  with its user and prefix length, in a faiss IVF index (inner product on L2-normalised keys).
  New memories can be appended online (no retraining); :meth:`MemoryBank.search` never returns a
  memory of the querying user unless it comes from a strictly shorter prefix (the user's past).
- :class:`RetrievalAugmentedModule`: two channels of cross-attention -> feed-forward ->
  cross-attention over the K retrieved memories; channel s attends with the memories' sequence
  representations as keys and their target embeddings as values, channel t with the two swapped.
- :func:`fuse`: h~ = alpha h + (1 - alpha)(beta h_s + (1 - beta) h_t).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

__all__ = ["MemoryBank", "RetrievalAugmentedModule", "fuse"]


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


class _CrossAttention(nn.Module):
    """Multi-head cross-attention of one query over K memories, then a dropout; no residual and no
    LayerNorm (as in the official RaSeRec code): the output is a projection of the attended
    values, so it can carry the retrieved targets' direction instead of the query's."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return self.drop(self.attn(q, keys, values, need_weights=False)[0])


class _Channel(nn.Module):
    """cross-attention -> feed-forward (residual + LayerNorm) -> cross-attention."""

    def __init__(self, hidden: int, heads: int, inner: int, dropout: float):
        super().__init__()
        self.attn1 = _CrossAttention(hidden, heads, dropout)
        self.ff = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(), nn.Linear(inner, hidden), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(hidden)
        self.attn2 = _CrossAttention(hidden, heads, dropout)

    def forward(self, h: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        x = self.attn1(h.unsqueeze(1), keys, values)
        x = self.norm(x + self.ff(x))
        return self.attn2(x, keys, values).squeeze(1)


class RetrievalAugmentedModule(nn.Module):
    """The retrieval-augmented module: channel s (keys = memory sequence representations, values =
    memory target embeddings) and channel t (swapped), each cross-attention -> FFN -> cross-attention."""

    def __init__(self, hidden: int = 64, heads: int = 2, inner: int = 256, dropout: float = 0.5):
        super().__init__()
        self.s = _Channel(hidden, heads, inner, dropout)
        self.t = _Channel(hidden, heads, inner, dropout)

    def forward(self, h: torch.Tensor, mem_seq: torch.Tensor, mem_tgt: torch.Tensor):
        return self.s(h, mem_seq, mem_tgt), self.t(h, mem_tgt, mem_seq)


def fuse(h: torch.Tensor, h_s: torch.Tensor, h_t: torch.Tensor, alpha: float = 0.5, beta: float = 1.0) -> torch.Tensor:
    """RaSeRec's fusion h~ = alpha h + (1 - alpha)(beta h_s + (1 - beta) h_t); alpha = 1 is the backbone."""
    if alpha == 1.0:
        return h
    return alpha * h + (1 - alpha) * (beta * h_s + (1 - beta) * h_t)
