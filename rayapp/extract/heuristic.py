"""Heuristic extractors, the baselines the trained ones are compared against. Each maps
``(question, passages)`` to :class:`Evidence`; pick one by name from ``EXTRACTORS``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
from rayapp._internal.registry import registrar

__all__ = ["Evidence", "EXTRACTORS", "register_extractor", "split_sentences", "compression_ratio",
           "FullPassages", "TopSentences"]

EXTRACTORS: dict[str, Callable[..., object]] = {}

_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


@dataclass
class Evidence:
    evidence: str
    rationale: str
    compression: float  # passage words / evidence words

    def to_dict(self) -> dict:
        return self.__dict__.copy()


register_extractor = registrar(EXTRACTORS, "extractor")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT.split(text.strip()) if s.strip()]


def compression_ratio(passages: list[str], evidence: str) -> float:
    """Words in the passages / words in the evidence (inf for empty evidence)."""
    n_e = len(evidence.split())
    return float("inf") if n_e == 0 else sum(len(p.split()) for p in passages) / n_e


@register_extractor("full")
class FullPassages:
    """No extraction: the passages themselves (compression 1)."""

    def __call__(self, question: str, passages: list[str]) -> Evidence:
        text = "\n".join(passages)
        return Evidence(text, "", compression_ratio(passages, text))


@register_extractor("top_sentences")
class TopSentences:
    """The ``k`` sentences most similar to the question under a bi-encoder (``encode``: texts ->
    unit vectors), in their original order."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray], k: int = 2):
        self.encode, self.k = encode, k

    def __call__(self, question: str, passages: list[str]) -> Evidence:
        sents = [s for p in passages for s in split_sentences(p)]
        if not sents:
            return Evidence("", "no sentences", compression_ratio(passages, ""))
        vecs = self.encode([question] + sents)
        sims = vecs[1:] @ vecs[0]
        keep = sorted(np.argsort(-sims)[: self.k].tolist())
        text = " ".join(sents[i] for i in keep)
        return Evidence(text, f"top {len(keep)} of {len(sents)} sentences by cosine similarity",
                        compression_ratio(passages, text))
