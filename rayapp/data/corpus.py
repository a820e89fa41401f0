"""Build a versioned corpus with Ray Data: documents, passages, clusters (parquet) + manifest.

Layout of ``<home>/corpus/<version>/``::

    documents/*.parquet   doc_id, title, text, cluster_key, meta (JSON string), n_words, source
    passages/*.parquet    passage_id, doc_id, title, text, start, end, n_words
    clusters.parquet      cluster_id, key, doc_ids, n_words
    quarantine.jsonl      one line per refused item: source, error, meta
    manifest.json         counts, version, schema version, config (written last)

``version`` hashes the schema version, the corpus config and every source file's bytes, so a
second run with the same inputs reuses the folder and a changed input or config builds a new one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from ray.data.expressions import col

from rayapp._internal.artifacts import read_manifest, staging_dir, write_json_atomic
from rayapp._internal.hashing import stable_hash
from rayapp.config import CorpusConfig
from rayapp.data._sources import fingerprint, list_items, read_item
from rayapp.data._text import chunk_spans, passage_text
from rayapp.types import SCHEMA_VERSION

log = logging.getLogger(__name__)

__all__ = ["EmptyCorpusError", "CorpusInfo", "build_corpus", "load_passages", "corpus_version"]


class EmptyCorpusError(ValueError):
    """The source produced no usable document."""


@dataclass
class CorpusInfo:
    path: Path
    version: str
    manifest: dict[str, Any]
    cached: bool


def corpus_version(cfg: CorpusConfig, items: list[dict[str, str]]) -> str:
    return stable_hash(SCHEMA_VERSION, cfg.model_dump(mode="json"), fingerprint(cfg, items))


def _chunk_doc(row: dict[str, Any], max_words: int, min_words: int) -> list[dict[str, Any]]:
    out = []
    for i, (s, e, n) in enumerate(chunk_spans(row["text"], max_words)):
        if n < min_words:
            continue
        out.append({
            "passage_id": f"{row['doc_id']}-p{i}",
            "doc_id": row["doc_id"],
            "title": row["title"],
            "text": passage_text(row["text"], s, e),
            "start": s,
            "end": e,
            "n_words": n,
        })
    return out


def build_corpus(cfg: CorpusConfig, home: Path) -> CorpusInfo:
    """Build (or reuse) the corpus version for ``cfg``. Ray must be initialised.

    Bad items never crash the build: they are written to ``quarantine.jsonl`` with a reason and
    counted in the manifest. A source with no usable document raises :class:`EmptyCorpusError`
    and leaves every earlier version untouched.
    """
    items = list_items(cfg)
    if cfg.max_documents is not None and cfg.kind == "folder":
        items = items[: cfg.max_documents]
    version = corpus_version(cfg, items)
    final = Path(home) / "corpus" / version
    manifest = read_manifest(final)
    if manifest is not None:
        log.info("corpus %s reused (%d passages)", version, manifest["counts"]["passages"])
        return CorpusInfo(final, version, manifest, cached=True)
    if not items:
        raise EmptyCorpusError(f"corpus source is empty: {cfg.kind} source listed no files "
                               f"({cfg.path or cfg.modules}, glob {cfg.glob!r})")

    rows = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 16)))
    rows = rows.flat_map(read_item, fn_kwargs={"cfg": cfg}).materialize()
    bad = rows.filter(expr=col("error") != "").drop_columns(["doc_id", "title", "text", "cluster_key", "n_words"])
    quarantine = bad.take_all()
    docs = rows.filter(expr=(col("error") == "") & (col("n_words") >= cfg.chunk.min_words)).drop_columns(["error"])
    if cfg.max_documents is not None and cfg.kind == "stdlib":
        docs = docs.limit(cfg.max_documents)
    docs = docs.materialize()
    n_rows = rows.count()
    n_docs = docs.count()
    n_short = n_rows - len(quarantine) - n_docs if cfg.max_documents is None else None
    if n_docs == 0:
        reasons = sorted({q["error"] for q in quarantine})[:5]
        raise EmptyCorpusError(
            f"corpus is empty: {len(items)} source items gave 0 usable documents "
            f"({len(quarantine)} quarantined{': ' + '; '.join(reasons) if reasons else ''})"
        )

    with staging_dir(final) as tmp:
        docs.write_parquet(str(tmp / "documents"))
        passages = docs.flat_map(
            _chunk_doc, fn_kwargs={"max_words": cfg.chunk.max_words, "min_words": cfg.chunk.min_words}
        ).materialize()
        passages.write_parquet(str(tmp / "passages"))
        n_passages = passages.count()

        meta = docs.select_columns(["doc_id", "cluster_key", "n_words"]).to_pandas()
        groups = meta.groupby("cluster_key", sort=True)
        clusters = pa.table({
            "cluster_id": [stable_hash("cluster", k) for k in groups.groups],
            "key": list(groups.groups),
            "doc_ids": [sorted(g["doc_id"].tolist()) for _, g in groups],
            "n_words": [int(g["n_words"].sum()) for _, g in groups],
        })
        pq.write_table(clusters, tmp / "clusters.parquet")
        with open(tmp / "quarantine.jsonl", "w", encoding="utf-8") as f:
            for q in quarantine:
                f.write(json.dumps({"source": q["source"], "error": q["error"], "meta": json.loads(q["meta"])}) + "\n")
        manifest = {
            "kind": "corpus",
            "version": version,
            "schema_version": SCHEMA_VERSION,
            "config": cfg.model_dump(mode="json"),
            "counts": {
                "items": len(items),
                "documents": n_docs,
                "passages": n_passages,
                "clusters": clusters.num_rows,
                "quarantined": len(quarantine),
                "too_short": n_short,
            },
        }
        write_json_atomic(tmp / "manifest.json", manifest)
    log.info("corpus %s built: %s", version, manifest["counts"])
    return CorpusInfo(final, version, manifest, cached=False)


def load_passages(corpus_dir: Path, columns: list[str] | None = None) -> pa.Table:
    """All passages of a corpus version, sorted by passage_id (a stable order for indexes)."""
    table = pq.read_table(Path(corpus_dir) / "passages", columns=columns)
    return table.sort_by("passage_id")
