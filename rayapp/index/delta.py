"""Delta indexes: new documents made retrievable beside a live index without rebuilding it.

A delta is an ordinary corpus version and index version over the new documents only, built with
the base corpus's chunking and the base index's embedder and BM25 settings (flat faiss: deltas are
small). The served retriever searches the base and each delta and merges the ranked lists by
reciprocal rank (:func:`rayapp.retrieve.merge_hits`). ``<home>/deltas/<base index version>.json``
lists a base's deltas; the next full build of a corpus that includes the documents merges them
for good (its new index version has no deltas).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from pydantic import Field

from rayapp._internal.artifacts import read_manifest, write_json_atomic
from rayapp.config import CorpusConfig, EmbedConfig, IndexConfig, RayConfig, StrictModel, default_home

__all__ = ["build_delta", "list_deltas", "check_delta", "DeltaError", "AddDocumentsConfig"]


class DeltaError(ValueError):
    """A delta cannot be built over, or served with, this base index."""


def _registry(home: Path, base_version: str) -> Path:
    return Path(home) / "deltas" / f"{base_version}.json"


def list_deltas(home: Path, base_index: str | Path) -> list[str]:
    """The delta index folders registered for ``base_index``, oldest first (finished ones only)."""
    base = read_manifest(Path(base_index))
    if base is None:
        raise DeltaError(f"no finished index at {base_index}")
    p = _registry(home, base["version"])
    paths = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else []
    return [d for d in paths if read_manifest(Path(d)) is not None]


def build_delta(base_index: str | Path, documents: str | Path, home: Path, *, text_field: str = "text",
                title_field: str = "title", id_field: str | None = None, embed: EmbedConfig | None = None):
    """Chunk, embed and index the documents of the JSONL file ``documents`` (one per line; bad lines
    are quarantined and counted, as in any corpus build) as a delta of ``base_index``, and register
    it. Returns the delta's :class:`~rayapp.index.IndexInfo`. Ray must be initialised."""
    from rayapp.data import build_corpus
    from rayapp.index import build_index

    base_path = Path(base_index)
    base = read_manifest(base_path)
    if base is None:
        raise DeltaError(f"no finished index at {base_index}")
    corpus_manifest = read_manifest(Path(base["corpus_path"]))
    if corpus_manifest is None:
        raise DeltaError(f"index {base_index}: its corpus {base['corpus_path']} is gone")
    documents = Path(documents).resolve()
    if not documents.is_file():
        raise DeltaError(f"documents file not found: {documents}")
    base_corpus = CorpusConfig.model_validate(corpus_manifest["config"])
    corpus_cfg = CorpusConfig(kind="jsonl", path=documents, text_field=text_field, title_field=title_field,
                              id_field=id_field, chunk=base_corpus.chunk, dedup=base_corpus.dedup,
                              clusters=base_corpus.clusters, min_doc_tokens=base_corpus.min_doc_tokens,
                              max_doc_tokens=base_corpus.max_doc_tokens)
    corpus = build_corpus(corpus_cfg, home)
    emb = base["embedder"]
    embed = (embed or EmbedConfig()).model_copy(update={"model": emb["path"], "max_seq_length": emb["max_seq_length"]})
    icfg = IndexConfig.model_validate({**base["config"], "faiss_factory": "Flat", "funnel": False, "gpu": False})
    info = build_index(corpus, embed, icfg, home, latest=False)
    reg = _registry(home, base["version"])
    paths = json.loads(reg.read_text(encoding="utf-8")) if reg.is_file() else []
    if str(info.path) not in paths:
        write_json_atomic(reg, [*paths, str(info.path)])
    return info


def check_delta(base, delta) -> None:
    """A delta must embed with the base's model (its vectors share the base's space)."""
    b, d = base.manifest["embedder"], delta.manifest["embedder"]
    if (b["path"], b["max_seq_length"]) != (d["path"], d["max_seq_length"]):
        raise DeltaError(f"delta {delta.path} was embedded with {d['path']} but the index {base.path} with {b['path']}")


class AddDocumentsConfig(StrictModel):
    """``rayapp add-documents``: index ``documents`` (JSONL) as a delta of ``index_path`` (a folder,
    or ``latest``) and, when the Serve app runs over that index on the cluster, roll it to serve the
    delta too (``app_config``: the AppConfig YAML the app runs with). Relative ``documents`` and
    ``app_config`` paths are relative to the config file."""

    ray: RayConfig = Field(default_factory=RayConfig)
    home: Path = Field(default_factory=default_home)
    index_path: str = "latest"
    documents: Path
    text_field: str = "text"
    title_field: str = "title"
    id_field: Optional[str] = None
    app_config: Optional[Path] = None
    results_dir: Path = Path("results/add_documents")
