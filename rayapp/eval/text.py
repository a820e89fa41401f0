"""Text overlap metrics for generated answers."""

from __future__ import annotations

import re

__all__ = ["rouge_l", "prefix_agreement"]

_WORD = re.compile(r"\w+")


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 (Lin, 2004): F = 2PR / (P + R) with P = LCS / |candidate|, R = LCS / |reference|,
    over lower-cased word tokens; 0 when either side is empty."""
    c, r = _WORD.findall(candidate.lower()), _WORD.findall(reference.lower())
    if not c or not r:
        return 0.0
    n = _lcs(c, r)
    return 0.0 if n == 0 else 2 * n / (len(c) + len(r))


def prefix_agreement(a: list[int], b: list[int], n: int = 32) -> float:
    """Share of the first ``n`` positions where token ids ``a`` and ``b`` agree (a missing token counts
    as a disagreement unless both sequences ended)."""
    width = min(n, max(len(a), len(b)))
    if width == 0:
        return 1.0
    return sum(1 for i in range(width) if i < len(a) and i < len(b) and a[i] == b[i]) / width
