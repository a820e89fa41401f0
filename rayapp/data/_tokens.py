"""Token counting for chunk budgets and length filters.

``whitespace`` counts words (no model needed); any other name is an embedder (``minilm``, or a
folder with a ``tokenizer.json``) whose fast tokenizer counts tokens without special tokens, so a
passage's ``n_tokens`` is what the embedder will see (less its [CLS]/[SEP]).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

_WORD = re.compile(r"\S+")


class TokenCounter:
    def __init__(self, name: str):
        self.name = name
        self._tok = None
        if name != "whitespace":
            from tokenizers import Tokenizer

            from rayapp.models import resolve_embedder

            path = Path(resolve_embedder(name)) / "tokenizer.json"
            if not path.is_file():
                raise FileNotFoundError(f"corpus.chunk.tokenizer: no tokenizer.json in {path.parent}")
            self._tok = Tokenizer.from_file(str(path))
            self._tok.no_truncation()
            self._tok.no_padding()

    def count(self, text: str) -> int:
        if self._tok is None:
            return len(_WORD.findall(text))
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def spans(self, text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
        """Character spans (absolute in ``text``) of the tokens of ``text[start:end]``."""
        end = len(text) if end is None else end
        if self._tok is None:
            return [m.span() for m in _WORD.finditer(text, start, end)]
        enc = self._tok.encode(text[start:end], add_special_tokens=False)
        return [(start + s, start + e) for s, e in enc.offsets]


@functools.lru_cache(maxsize=4)
def token_counter(name: str) -> TokenCounter:
    """One counter per tokenizer name per process (Ray workers build theirs on first use)."""
    return TokenCounter(name)
