"""SASRec (Kang & McAuley, 2018), the backbone of DuoRec and RaSeRec, in plain torch.

Item and position embeddings -> LayerNorm -> dropout -> causal Transformer encoder (post-norm,
GELU), layer for layer as RecBole's ``TransformerEncoder`` that DuoRec and RaSeRec build on: dropout
on the attention weights and on each block's output, LayerNorm eps 1e-12, and no dropout between
the feed-forward's two linear layers (torch's ``TransformerEncoderLayer`` has one there; it is
removed). Sequences are right-padded (the items first, then 0s), so causal attention never lets a real
position see padding; the representation of a sequence is the output at its last item.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SASRec", "next_item_loss", "duorec_contrastive_loss"]


class SASRec(nn.Module):
    def __init__(self, n_items: int, hidden: int = 64, layers: int = 2, heads: int = 2, inner: int = 256,
                 dropout: float = 0.5, max_len: int = 50):
        super().__init__()
        self.n_items, self.max_len = n_items, max_len
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(hidden, heads, inner, dropout, activation="gelu", batch_first=True,
                                           layer_norm_eps=1e-12)
        layer.dropout = nn.Identity()  # RecBole's FeedForward: dense -> GELU -> dense -> dropout, nothing between
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Sequence representations h [batch, hidden] from right-padded ``ids`` [batch, L <= max_len]."""
        L = ids.shape[1]
        pos = torch.arange(L, device=ids.device)
        x = self.drop(self.norm(self.item_emb(ids) + self.pos_emb(pos)[None]))
        causal = torch.triu(torch.ones(L, L, dtype=torch.bool, device=ids.device), diagonal=1)
        out = self.encoder(x, mask=causal)
        last = (lengths - 1).clamp_min(0).view(-1, 1, 1).expand(-1, 1, out.shape[-1])
        return out.gather(1, last).squeeze(1)  # a gather, not indexing by arange(len): ONNX keeps the batch dynamic

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """Dot product with every item embedding: [batch, n_items + 1] (column 0 is padding)."""
        return h @ self.item_emb.weight.T


def next_item_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the next item over all items (SASRec as trained in RecBole / DuoRec):
    L = -log softmax(h E^T)[target], the padding column excluded."""
    logits = logits.clone()
    logits[:, 0] = float("-inf")
    return F.cross_entropy(logits, targets)


def duorec_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """DuoRec's contrastive term (Qiu et al., 2022; RaSeRec's stage 1): for each of the N pairs
    (z1_i = h' of a sequence under a second dropout pass, z2_i = h+ of a training sequence with the
    same target), the positive is its partner and the 2N - 2 other vectors of the batch are
    negatives, with dot-product similarity / tau:

        L = mean over the 2N anchors a of -log exp(a . p / tau) / sum_{b != a} exp(a . b / tau)
    """
    z = torch.cat([z1, z2], dim=0)
    n = len(z1)
    sim = z @ z.T / tau
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)
