"""Rerank stage: a cross-encoder scores (query, passage) pairs jointly.

:class:`CrossEncoder` loads a standard Hugging Face sequence-classification folder with one output
(``num_labels: 1``, the score is the logit) — the format :func:`rayapp.train.reranker.train_reranker`
writes and that ``sentence_transformers.CrossEncoder`` and ``transformers`` read unchanged. No
cross-encoder with weights ships in a registry package, so rayapp trains its own from MiniLM.
Pairs are encoded as ``[CLS] query [SEP] passage [SEP]``, truncating the passage only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["CrossEncoder"]


class CrossEncoder:
    def __init__(self, model, tokenizer, max_length: int = 256):
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length

    @classmethod
    def from_pretrained(cls, path: str | Path, max_length: int = 256, num_labels: int | None = None) -> "CrossEncoder":
        """Load a sequence-classification folder. ``num_labels=1`` starts a new head on an encoder
        folder (e.g. MiniLM) for training; leave it ``None`` to load a trained reranker."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from rayapp.models import ModelNotFoundError

        if not Path(path).is_dir():
            raise ModelNotFoundError(f"cross-encoder folder not found: {path}")
        kw = {"num_labels": num_labels} if num_labels is not None else {}
        model = AutoModelForSequenceClassification.from_pretrained(str(path), **kw)
        if model.config.num_labels != 1:
            raise ValueError(f"{path}: a reranker has one output (num_labels=1), this has {model.config.num_labels}")
        model.eval()
        return cls(model, AutoTokenizer.from_pretrained(str(path)), max_length)

    def tokenize(self, queries: Sequence[str], passages: Sequence[str]):
        """Pairs cut to ``max_length`` tokens, from the longer side first: the passage, unless the
        query is the longer (a query over ``max_length`` must not fail)."""
        return self.tokenizer(list(queries), list(passages), padding=True, truncation="longest_first",
                              max_length=self.max_length, return_tensors="pt")

    def forward(self, queries: Sequence[str], passages: Sequence[str]):
        """Scores with gradient (training): one logit per pair."""
        return self.model(**self.tokenize(queries, passages)).logits[:, 0]

    def score(self, query: str, passages: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """One relevance score per passage for ``query`` (higher is more relevant)."""
        return self.score_pairs([query] * len(passages), passages, batch_size)

    def score_pairs(self, queries: Sequence[str], passages: Sequence[str], batch_size: int = 32) -> np.ndarray:
        import torch

        if len(queries) != len(passages):
            raise ValueError(f"score_pairs: {len(queries)} queries but {len(passages)} passages")
        out = np.zeros(len(passages), dtype=np.float32)
        # length-sorted batches pad less; scores go back to the input order
        order = sorted(range(len(passages)), key=lambda i: len(passages[i]) + len(queries[i]))
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s: s + batch_size]
                out[idx] = self.forward([queries[i] for i in idx], [passages[i] for i in idx]).float().numpy()
        return out

    def save(self, path: str | Path) -> None:
        self.model.save_pretrained(str(path), safe_serialization=True)
        self.tokenizer.save_pretrained(str(path))
