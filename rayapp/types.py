"""The contracts between stages: plain dataclasses that cross process and file boundaries.

Ids are content hashes (see :mod:`rayapp._internal.hashing`), so a rebuild keeps the ids of
unchanged documents. Every stage returns hits sorted by score, best first, and reports a
:class:`StageTiming`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Optional

__all__ = ["Document", "Passage", "Cluster", "Hit", "StageTiming", "Answer", "SCHEMA_VERSION"]

#: Version of the on-disk corpus schema (documents, passages, clusters parquet + manifest).
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    text: str
    cluster_key: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Passage:
    passage_id: str
    doc_id: str
    text: str
    start: int
    end: int
    n_tokens: int


@dataclass(frozen=True)
class Cluster:
    cluster_id: str
    key: str
    doc_ids: list[str]
    n_tokens: int


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


@dataclass
class Answer:
    text: str
    citations: list[str]
    passages: list[Hit]
    timings: list[StageTiming]

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "citations": list(self.citations),
            "passages": [h.to_dict() for h in self.passages],
            "timings": [t.to_dict() for t in self.timings],
        }
