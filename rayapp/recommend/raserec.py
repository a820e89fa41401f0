"""RaSeRec (arXiv 2412.18378): retrieval-augmented sequential recommendation over a frozen SASRec.

- :class:`~rayapp.recommend.memory.MemoryBank` (in ``memory``, which needs no torch): (sequence
  representation, target-item embedding) for every training prefix, searched by inner product.
- :class:`RetrievalAugmentedModule`: two channels of cross-attention -> feed-forward ->
  cross-attention over the K retrieved memories; channel s attends with the memories' sequence
  representations as keys and their target embeddings as values, channel t with the two swapped.
- :func:`~rayapp.recommend.memory.fuse`: h~ = alpha h + (1 - alpha)(beta h_s + (1 - beta) h_t).
"""

from __future__ import annotations

import torch
from torch import nn

from rayapp.recommend.memory import MemoryBank, fuse

__all__ = ["MemoryBank", "RetrievalAugmentedModule", "fuse"]


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
