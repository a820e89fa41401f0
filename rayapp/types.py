"""The contracts between stages: plain dataclasses that cross process boundaries.

The on-disk tables (documents, passages, clusters) are described once, in ARCHITECTURE.md
("Corpus schema"), and written by :mod:`rayapp.data.corpus`. Ids are content hashes (see :mod:`rayapp._internal.hashing`), so a rebuild keeps the ids of
unchanged documents. Every stage returns hits sorted by score, best first, and reports a
:class:`StageTiming`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Optional

__all__ = ["Hit", "StageTiming", "SCHEMA_VERSION"]

#: Version of the on-disk corpus schema (documents, passages, clusters parquet + manifest).
SCHEMA_VERSION = 3


@dataclass
class Hit:
    id: str
    kind: Literal["cluster", "doc", "passage"]
    score: float
    stage: str
    text: Optional[str] = None
    title: Optional[str] = None
    doc_id: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StageTiming:
    stage: str
    seconds: float
    n_in: int = 0
    n_out: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
