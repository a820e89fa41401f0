"""Index stage: BM25 (bm25s) and faiss over a corpus version's passages.

Layout of ``<home>/indexes/<corpus version>/<index version>/``::

    passage_ids.json   row i of both indexes is passage_ids[i] (passages sorted by id)
    text_hashes.json   hash of row i's text (vectors are reused by it across versions)
    embeddings.npy     float32, L2-normalised, one row per passage
    dense.faiss        faiss index (factory string from the config), inner product
    bm25/              bm25s index files
    funnel/            with ``funnel: true`` (FunnelRAG's coarse units): doc_ids.json (row i of
                       doc_embeddings.npy), doc_hashes.json, doc_embeddings.npy (each document's
                       text, first max_seq_length tokens), clusters.json (cluster id + document
                       rows), bm25/ (BM25 over each cluster's concatenated titles and texts)
    manifest.json      corpus path and version, embedder, config, counts (written last)

``index version`` hashes the corpus version, the embedder config and the index config; a finished
version is reused, never edited. A new version built with the same embedder and index config as an
earlier one (``<home>/indexes/latest-<key>.json``) embeds only passages whose text that version did
not have, and copies the other vectors (documents' vectors likewise). Serve replicas open it read-only with :class:`LoadedIndex`.
"""

from __future__ import annotations

import contextlib
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
from rayapp.data import CorpusInfo, embed_texts, load_documents, load_passages
from rayapp.data._dedup import text_hash
from rayapp.models import resolve_embedder

log = logging.getLogger(__name__)

__all__ = ["IndexInfo", "build_index", "LoadedIndex", "bm25_tokenize", "latest_index"]


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


def build_index(corpus: CorpusInfo, embed: EmbedConfig, cfg: IndexConfig, home: Path,
                latest: bool = True) -> IndexInfo:
    """Embed the corpus's passages on Ray and build BM25 + faiss (or reuse the built version).
    ``latest``: record it as the newest index of its config (what ``index_path: latest`` deploys,
    and whose vectors the next build reuses); delta indexes are not."""
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
    prev = _previous_index(Path(home), key)
    vectors, n_reused = _embed_reusing(texts, hashes, embed, prev)
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
        if cfg.funnel:
            t0 = time.perf_counter()
            counts_funnel = _build_funnel(corpus, embed, tmp / "funnel", prev / "funnel" if prev else None)
            timings["funnel_s"] = round(time.perf_counter() - t0, 3)
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
                       "reused_vectors": n_reused, **(counts_funnel if cfg.funnel else {})},
            "build_timings": timings,
        }
        write_json_atomic(tmp / "manifest.json", manifest)
    if latest:
        write_json_atomic(Path(home) / "indexes" / f"latest-{key}.json", {"path": str(final)})
    log.info("index %s built over %d passages (%d vectors reused): %s", version, len(ids), n_reused, timings)
    return IndexInfo(final, version, manifest, cached=False)


def _build_funnel(corpus: CorpusInfo, embed: EmbedConfig, out: Path, prev: Optional[Path]) -> dict[str, int]:
    """Documents' vectors and the cluster-level BM25 index (FunnelRAG's coarse units)."""
    import bm25s
    import pyarrow.parquet as pq

    out.mkdir()
    docs = load_documents(corpus.path, columns=["doc_id", "title", "text"])
    doc_ids = docs.column("doc_id").to_pylist()
    titles, texts = docs.column("title").to_pylist(), docs.column("text").to_pylist()
    hashes = [text_hash(t) for t in texts]
    ok_prev = prev if prev is not None and (prev / "doc_hashes.json").is_file() else None
    vectors, n_reused = _embed_reusing(texts, hashes, embed, ok_prev, "doc_hashes.json", "doc_embeddings.npy")
    row_of = {d: i for i, d in enumerate(doc_ids)}
    clusters = [{"cluster_id": c["cluster_id"], "doc_rows": [row_of[d] for d in c["doc_ids"] if d in row_of]}
                for c in pq.read_table(corpus.path / "clusters.parquet", columns=["cluster_id", "doc_ids"]).to_pylist()]
    clusters = [c for c in clusters if c["doc_rows"]]
    bm25 = bm25s.BM25(method="lucene")
    bm25.index(bm25_tokenize(["\n".join(f"{titles[r]}\n{texts[r]}" for r in c["doc_rows"]) for c in clusters]),
               show_progress=False)
    bm25.save(str(out / "bm25"))
    np.save(out / "doc_embeddings.npy", vectors)
    for name, obj in (("doc_ids.json", doc_ids), ("doc_hashes.json", hashes), ("clusters.json", clusters)):
        (out / name).write_text(json.dumps(obj), encoding="utf-8")
    return {"documents": len(doc_ids), "clusters": len(clusters), "documents_embedded": len(doc_ids) - n_reused,
            "reused_doc_vectors": n_reused}


def latest_index(home: Path) -> Path:
    """The index built most recently under ``home`` (by any config): what ``index_path: latest``
    in a Serve config YAML deploys."""
    found = []
    for pointer in (Path(home) / "indexes").glob("latest-*.json"):
        try:
            path = Path(json.loads(pointer.read_text(encoding="utf-8"))["path"])
        except (OSError, ValueError, KeyError):
            continue
        if read_manifest(path) is not None:
            found.append((pointer.stat().st_mtime, path))
    if not found:
        raise FileNotFoundError(f"no built index under {Path(home) / 'indexes'}: run `rayapp demo` or "
                                "`rayapp serve` first, or pass index_path=<index folder>")
    return max(found)[1]


def _previous_index(home: Path, key: str) -> Optional[Path]:
    try:
        path = Path(json.loads((home / "indexes" / f"latest-{key}.json").read_text(encoding="utf-8"))["path"])
    except (OSError, ValueError, KeyError):
        return None
    return path if read_manifest(path) is not None and (path / "text_hashes.json").is_file() else None


def _embed_reusing(texts: list[str], hashes: list[str], embed: EmbedConfig, prev: Optional[Path],
                   hashes_file: str = "text_hashes.json", vectors_file: str = "embeddings.npy") -> tuple[np.ndarray, int]:
    """Vectors for ``texts``: copied from ``prev`` where it embedded the same text, else embedded."""
    row_of: dict[str, int] = {}
    if prev is not None:
        row_of = {h: i for i, h in enumerate(json.loads((prev / hashes_file).read_text(encoding="utf-8")))}
    todo = [i for i, h in enumerate(hashes) if h not in row_of]
    if len(todo) == len(texts):
        return embed_texts(texts, embed), 0
    old = np.load(prev / vectors_file, mmap_mode="r")
    vectors = np.zeros((len(texts), old.shape[1]), dtype=np.float32)
    for i, h in enumerate(hashes):
        if h in row_of:
            vectors[i] = old[row_of[h]]
    if todo:
        vectors[todo] = embed_texts([texts[i] for i in todo], embed)
    return vectors, len(texts) - len(todo)


@contextlib.contextmanager
def _blas_path(queries: np.ndarray):
    """faiss (1.15) computes exact inner products with a matrix product when ``n_queries x d`` reaches
    ``distance_compute_blas_threshold`` (128,000 by default, i.e. 334 queries at d = 384), else
    query by query with SIMD. Measured at 101k x 384, one thread, ms per query: 1 query 15.6 (SIMD)
    vs 30.7 (product); 4 queries 14.7 vs 10.1; 16 queries 15.2 vs 5.0. So two or more ``queries``
    (n, d) take the product: the threshold is lowered to their ``n x d`` for the call (a
    process-wide setting, put back after it); one query leaves it alone."""
    import faiss

    before = faiss.cvar.distance_compute_blas_threshold
    if len(queries) > 1:
        faiss.cvar.distance_compute_blas_threshold = min(before, queries.size)
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_threshold = before


def _read_faiss(faiss, path: Path):
    """The index memory-mapped in place where faiss can (``IO_FLAG_MMAP_IFC``: no copy of the
    vectors, pages shared by every replica on the host, about 30x faster to open at 100k x 384),
    else read into memory. Either way the same search results (a test)."""
    flag = getattr(faiss, "IO_FLAG_MMAP_IFC", None)
    if flag is not None:
        try:
            return faiss.read_index(str(path), flag)
        except RuntimeError as e:  # an index type faiss cannot map
            log.debug("faiss: %s not memory-mapped (%s)", path, e)
    return faiss.read_index(str(path))


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
        self.dense = _read_faiss(faiss, self.path / "dense.faiss")
        if hasattr(self.dense, "nprobe"):
            self.dense.nprobe = manifest["config"]["nprobe"]
        self.on_gpu = False
        if manifest["config"].get("gpu") and hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0:
            self.dense, self.on_gpu = faiss.index_cpu_to_all_gpus(self.dense), True
        #: the passages' unit vectors (memory-mapped, read-only): row i is passage i
        self.vectors = np.load(self.path / "embeddings.npy", mmap_mode="r")
        self.bm25 = bm25s.BM25.load(str(self.path / "bm25"))
        table = load_passages(Path(manifest["corpus_path"]), columns=["passage_id", "doc_id", "title", "text"])
        if table.column("passage_id").to_pylist() != self.ids:
            raise ValueError(f"index {self.path} does not match its corpus {manifest['corpus_path']}")
        #: document id of every passage row
        self.passage_doc_ids = table.column("doc_id").to_pylist()
        self.titles = table.column("title").to_pylist()
        self.texts = table.column("text").to_pylist()
        self.funnel = (self.path / "funnel").is_dir()
        if self.funnel:
            self._load_funnel(bm25s)

    def _load_funnel(self, bm25s) -> None:
        f = self.path / "funnel"
        #: document row -> document id (the funnel's document units)
        self.document_ids = json.loads((f / "doc_ids.json").read_text(encoding="utf-8"))
        clusters = json.loads((f / "clusters.json").read_text(encoding="utf-8"))
        #: cluster row -> cluster id, and -> its document rows (source order)
        self.cluster_ids = [c["cluster_id"] for c in clusters]
        self.cluster_docs: list[list[int]] = [c["doc_rows"] for c in clusters]
        self.doc_vectors = np.load(f / "doc_embeddings.npy", mmap_mode="r")
        self.cluster_bm25 = bm25s.BM25.load(str(f / "bm25"))
        docs = load_documents(Path(self.manifest["corpus_path"]), columns=["doc_id", "title", "text"])
        if docs.column("doc_id").to_pylist() != self.document_ids:
            raise ValueError(f"index {self.path}: funnel documents do not match the corpus")
        self.doc_titles, self.doc_texts = docs.column("title").to_pylist(), docs.column("text").to_pylist()
        row_of = {d: i for i, d in enumerate(self.document_ids)}
        #: passage row -> document row, and document row -> its passage rows (in passage order)
        self.passage_doc = np.array([row_of[d] for d in self.passage_doc_ids], dtype=np.int64)
        self.doc_passages: list[list[int]] = [[] for _ in self.document_ids]
        for p, d in enumerate(self.passage_doc):
            self.doc_passages[d].append(p)

    def __len__(self) -> int:
        return len(self.ids)

    def search_bm25(self, query: str, k: int) -> list[tuple[int, float]]:
        """(row, score) of the top ``k`` passages by BM25; empty when no query term is indexed."""
        return self.search_bm25_many([query], k)[0]

    def search_bm25_many(self, queries: list[str], k: int) -> list[list[tuple[int, float]]]:
        """:meth:`search_bm25` of each query, in one ``bm25s`` call (its fixed cost paid once)."""
        k = min(k, len(self.ids))
        tokens = bm25_tokenize(list(queries))
        if not tokens.vocab:
            return [[] for _ in queries]
        rows, scores = self.bm25.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [[(int(r), float(s)) for r, s in zip(rr, ss) if s > 0] for rr, ss in zip(rows, scores)]

    def search_dense(self, query_vec: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(row, cosine) of the top ``k`` passages by inner product of normalised vectors."""
        return self.search_dense_many(np.asarray(query_vec).reshape(1, -1), k)[0]

    def search_dense_many(self, query_vecs: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """:meth:`search_dense` of each row of ``query_vecs`` (n, d), in one faiss search. From two
        queries on, exact search takes faiss's matrix-product path, which reads the stored vectors
        once for the whole batch (:func:`_blas_path`): at 101k passages x 384 on one thread, 16
        queries cost 5.0 ms each instead of 15 ms each."""
        k = min(k, len(self.ids))
        q = np.ascontiguousarray(query_vecs, dtype=np.float32)
        with _blas_path(q):
            scores, rows = self.dense.search(q, k)
        return [[(int(r), float(s)) for r, s in zip(rr, ss) if r >= 0] for rr, ss in zip(rows, scores)]

    def search_clusters(self, query: str, k: int) -> list[tuple[int, float]]:
        """(cluster row, score) of the top ``k`` clusters by BM25 over their text (funnel indexes)."""
        if not self.funnel:
            raise ValueError(f"index {self.path} was built without funnel: true (no cluster index)")
        k = min(k, len(self.cluster_ids))
        tokens = bm25_tokenize([query])
        if not tokens.vocab:
            return []
        rows, scores = self.cluster_bm25.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if s > 0]
