"""Text cleaning and passage chunking rules.

Cleaning: Unicode NFKC, ``\\r\\n`` -> ``\\n``, tabs and runs of spaces -> one space, trailing spaces
removed, three or more newlines -> one blank line (paragraphs are kept).

Chunking (a token budget at sentence boundaries): paragraphs (blank-line separated) are packed
greedily into passages of at most ``max_tokens`` tokens; a paragraph longer than that is split at
sentence ends and the sentences are packed the same way; a sentence longer than ``max_tokens`` is cut
every ``max_tokens`` tokens. Tokens are counted by a :class:`~rayapp.data._tokens.TokenCounter`
(words by default). Each passage keeps its ``[start, end)`` character span in the cleaned text.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterator, Optional

from rayapp.data._tokens import TokenCounter, token_counter

_SPACES = re.compile(r"[ \t\f\v]+")
_BLANKS = re.compile(r"\n{3,}")
_PARA = re.compile(r"\S(?:.*?\S)?(?=\n\s*\n|\s*\Z)", re.S)
_SENT = re.compile(r"\S.*?(?:[.!?](?=\s)|\Z)", re.S)
_WORD = re.compile(r"\S+")


def clean_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = [_SPACES.sub(" ", line).rstrip() for line in text.split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


def _units(text: str, budget: int, counter: TokenCounter) -> Iterator[tuple[int, int, int]]:
    """(start, end, n_tokens) spans within the budget: paragraphs, else sentences, else cuts."""
    for para in _PARA.finditer(text):
        n = counter.count(para.group())
        if n <= budget:
            yield para.start(), para.end(), n
            continue
        for sent in _SENT.finditer(text, para.start(), para.end()):
            n = counter.count(sent.group())
            if n <= budget:
                yield sent.start(), sent.end(), n
                continue
            toks = counter.spans(text, sent.start(), sent.end())
            for i in range(0, len(toks), budget):
                chunk = toks[i : i + budget]
                yield chunk[0][0], chunk[-1][1], len(chunk)


def chunk_spans(text: str, max_tokens: int, counter: Optional[TokenCounter] = None) -> list[tuple[int, int, int]]:
    """Greedy packing of :func:`_units` into ``(start, end, n_tokens)`` passages."""
    counter = counter or token_counter("whitespace")
    out: list[tuple[int, int, int]] = []
    cur: list[int] | None = None
    for s, e, n in _units(text, max_tokens, counter):
        if cur is not None and cur[2] + n <= max_tokens:
            cur[1], cur[2] = e, cur[2] + n
        else:
            if cur is not None:
                out.append(tuple(cur))
            cur = [s, e, n]
    if cur is not None:
        out.append(tuple(cur))
    return out


def passage_text(text: str, start: int, end: int) -> str:
    """The passage as embedded and shown: its span with whitespace folded to single spaces."""
    return " ".join(text[start:end].split())
