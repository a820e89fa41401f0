"""Index stage: BM25 (bm25s) and faiss over a corpus version's passages.

Layout of ``<home>/indexes/<corpus version>/<index version>/``::

    passage_ids.json   row i of both indexes is passage_ids[i] (passages sorted by id)
    text_hashes.json   hash of row i's text (vectors are reused by it across versions)
    embeddings.npy     float32, L2-normalised, one row per passage
    dense.faiss        faiss index (factory string from the config), inner product
    bm25/              bm25s index files
    manifest.json      corpus path and version, embedder, config, counts (written last)

``index version`` hashes the corpus version, the embedder config and the index config; a finished
version is reused, never edited. A new version built with the same embedder and index config as an
earlier one (``<home>/indexes/latest-<key>.json``) embeds only passages whose text that version did
not have, and copies the other vectors. Serve replicas open it read-only with :class:`LoadedIndex`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from rayapp._internal.artifacts import read_manifest, staging_dir, write_json_atomic
from rayapp._internal.hashing import stable_hash
from rayapp.config import EmbedConfig, IndexConfig
from rayapp.data import CorpusInfo, embed_texts, load_passages
from rayapp.data._dedup import text_hash
from rayapp.models import resolve_embedder

log = logging.getLogger(__name__)

__all__ = ["IndexInfo", "build_index", "LoadedIndex", "bm25_tokenize"]


@dataclass
class IndexInfo:
    path: Path
    version: str
    manifest: dict[str, Any]
    cached: bool


def _faiss_index(vectors: np.ndarray, cfg: IndexConfig):
    import faiss

    index = faiss.index_factory(vectors.shape[1], cfg.faiss_factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)
    return index


def bm25_tokenize(texts: list[str]):
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", show_progress=False)


def build_index(corpus: CorpusInfo, embed: EmbedConfig, cfg: IndexConfig, home: Path) -> IndexInfo:
    """Embed the corpus's passages on Ray and build BM25 + faiss (or reuse the built version)."""
    import bm25s
    import faiss

    embedder = {"model": embed.model, "path": resolve_embedder(embed.model), "max_seq_length": embed.max_seq_length}
    version = stable_hash(corpus.version, embedder, cfg.model_dump(mode="json"))
    final = Path(home) / "indexes" / corpus.version / version
    manifest = read_manifest(final)
    if manifest is not None:
        return IndexInfo(final, version, manifest, cached=True)

    passages = load_passages(corpus.path, columns=["passage_id", "text"])
    ids = passages.column("passage_id").to_pylist()
    texts = passages.column("text").to_pylist()
    hashes = [text_hash(t) for t in texts]
    key = stable_hash(embedder, cfg.model_dump(mode="json"))
    timings = {}
    t0 = time.perf_counter()
    vectors, n_reused = _embed_reusing(texts, hashes, embed, _previous_index(Path(home), key))
    timings["embed_s"] = round(time.perf_counter() - t0, 3)
    with staging_dir(final) as tmp:
        t0 = time.perf_counter()
        dense = _faiss_index(vectors, cfg)
        faiss.write_index(dense, str(tmp / "dense.faiss"))
        timings["faiss_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        bm25 = bm25s.BM25(method=cfg.bm25_method, k1=cfg.bm25_k1, b=cfg.bm25_b)
        bm25.index(bm25_tokenize(texts), show_progress=False)
        bm25.save(str(tmp / "bm25"))
        timings["bm25_s"] = round(time.perf_counter() - t0, 3)
        np.save(tmp / "embeddings.npy", vectors)
        (tmp / "passage_ids.json").write_text(json.dumps(ids), encoding="utf-8")
        (tmp / "text_hashes.json").write_text(json.dumps(hashes), encoding="utf-8")
        manifest = {
            "kind": "index",
            "version": version,
            "corpus_path": str(corpus.path),
            "corpus_version": corpus.version,
            "embedder": embedder,
            "config": cfg.model_dump(mode="json"),
            "counts": {"passages": len(ids), "dim": int(vectors.shape[1]), "embedded": len(ids) - n_reused,
                       "reused_vectors": n_reused},
            "build_timings": timings,
        }
        write_json_atomic(tmp / "manifest.json", manifest)
    write_json_atomic(Path(home) / "indexes" / f"latest-{key}.json", {"path": str(final)})
    log.info("index %s built over %d passages (%d vectors reused): %s", version, len(ids), n_reused, timings)
    return IndexInfo(final, version, manifest, cached=False)


def _previous_index(home: Path, key: str) -> Optional[Path]:
    try:
        path = Path(json.loads((home / "indexes" / f"latest-{key}.json").read_text(encoding="utf-8"))["path"])
    except (OSError, ValueError, KeyError):
        return None
    return path if read_manifest(path) is not None and (path / "text_hashes.json").is_file() else None


def _embed_reusing(texts: list[str], hashes: list[str], embed: EmbedConfig,
                   prev: Optional[Path]) -> tuple[np.ndarray, int]:
    """Vectors for ``texts``: copied from ``prev`` where it embedded the same text, else embedded."""
    row_of: dict[str, int] = {}
    if prev is not None:
        row_of = {h: i for i, h in enumerate(json.loads((prev / "text_hashes.json").read_text(encoding="utf-8")))}
    todo = [i for i, h in enumerate(hashes) if h not in row_of]
    if len(todo) == len(texts):
        return embed_texts(texts, embed), 0
    old = np.load(prev / "embeddings.npy", mmap_mode="r")
    vectors = np.zeros((len(texts), old.shape[1]), dtype=np.float32)
    for i, h in enumerate(hashes):
        if h in row_of:
            vectors[i] = old[row_of[h]]
    if todo:
        vectors[todo] = embed_texts([texts[i] for i in todo], embed)
    return vectors, len(texts) - len(todo)


class LoadedIndex:
    """An index version opened read-only: BM25 and dense search over the same passage rows."""

    def __init__(self, path: str | Path):
        import bm25s
        import faiss

        self.path = Path(path)
        manifest = read_manifest(self.path)
        if manifest is None:
            raise FileNotFoundError(f"no finished index at {self.path} (manifest.json missing)")
        self.manifest = manifest
        self.ids: list[str] = json.loads((self.path / "passage_ids.json").read_text(encoding="utf-8"))
        self.dense = faiss.read_index(str(self.path / "dense.faiss"))
        if hasattr(self.dense, "nprobe"):
            self.dense.nprobe = manifest["config"]["nprobe"]
        self.bm25 = bm25s.BM25.load(str(self.path / "bm25"))
        table = load_passages(Path(manifest["corpus_path"]), columns=["passage_id", "doc_id", "title", "text"])
        if table.column("passage_id").to_pylist() != self.ids:
            raise ValueError(f"index {self.path} does not match its corpus {manifest['corpus_path']}")
        self.doc_ids = table.column("doc_id").to_pylist()
        self.titles = table.column("title").to_pylist()
        self.texts = table.column("text").to_pylist()

    def __len__(self) -> int:
        return len(self.ids)

    def search_bm25(self, query: str, k: int) -> list[tuple[int, float]]:
        """(row, score) of the top ``k`` passages by BM25; empty when no query term is indexed."""
        k = min(k, len(self.ids))
        tokens = bm25_tokenize([query])
        if not tokens.vocab:
            return []
        rows, scores = self.bm25.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if s > 0]

    def search_dense(self, query_vec: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(row, cosine) of the top ``k`` passages by inner product of normalised vectors."""
        k = min(k, len(self.ids))
        scores, rows = self.dense.search(np.asarray(query_vec, dtype=np.float32).reshape(1, -1), k)
        return [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]
