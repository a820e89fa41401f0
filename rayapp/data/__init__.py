"""Data stage: corpus sources, cleaning, chunking, the Ray Data corpus build and embedding.

Public surface: :func:`build_corpus`, :func:`load_passages`, :func:`load_documents`, :func:`embed_texts`,
:class:`CorpusInfo`, :class:`EmptyCorpusError`, :class:`SourceError`.
"""

from rayapp.data._sources import SourceError
from rayapp.data.corpus import CorpusInfo, EmptyCorpusError, build_corpus, load_documents, load_passages
from rayapp.data.embed import embed_texts

__all__ = ["build_corpus", "load_passages", "load_documents", "embed_texts", "CorpusInfo", "EmptyCorpusError", "SourceError"]
