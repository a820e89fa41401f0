"""Text cleaning and passage chunking rules.

Cleaning: Unicode NFKC, ``\\r\\n`` -> ``\\n``, tabs and runs of spaces -> one space, trailing spaces
removed, three or more newlines -> one blank line (paragraphs are kept).

Chunking: paragraphs (blank-line separated) are packed greedily into passages of at most
``max_words`` words; a paragraph longer than that is split at sentence ends and the sentences are
packed the same way; a sentence longer than ``max_words`` is cut every ``max_words`` words. Each
passage keeps its ``[start, end)`` character span in the cleaned document text.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterator

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


def _units(text: str, max_words: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, n_words) spans no longer than max_words: paragraphs, else sentences, else cuts."""
    for para in _PARA.finditer(text):
        n = count_words(para.group())
        if n <= max_words:
            yield para.start(), para.end(), n
            continue
        for sent in _SENT.finditer(text, para.start(), para.end()):
            words = list(_WORD.finditer(text, sent.start(), sent.end()))
            for i in range(0, len(words), max_words):
                chunk = words[i : i + max_words]
                yield chunk[0].start(), chunk[-1].end(), len(chunk)


def chunk_spans(text: str, max_words: int) -> list[tuple[int, int, int]]:
    """Greedy packing of :func:`_units` into ``(start, end, n_words)`` passages."""
    out: list[tuple[int, int, int]] = []
    cur: list[int] | None = None
    for s, e, n in _units(text, max_words):
        if cur is not None and cur[2] + n <= max_words:
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
