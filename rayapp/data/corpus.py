"""Build a versioned corpus with Ray Data: documents, passages, clusters (parquet) + manifest.

Steps: read (per source item, in Ray tasks) -> clean (NFKC, whitespace) -> count tokens -> length
filters -> exact and near-duplicate removal (MinHash LSH keys, a Ray Data shuffle) -> clusters of at most S tokens ->
chunking into passages by a token budget at sentence boundaries -> sharded parquet + manifest.

Layout of ``<home>/corpus/<version>/`` (schema version :data:`rayapp.types.SCHEMA_VERSION`)::

    documents/*.parquet   doc_id, title, text, cluster_key, meta (JSON), n_words, n_tokens, source, item, pos
    passages/*.parquet    passage_id, doc_id, title, text, start, end, n_tokens
    signatures/*.parquet  doc_id, text_hash, bands (the MinHash LSH band hashes, int64[b] as bytes)
    clusters.parquet      cluster_id, key, doc_ids, n_tokens
    quarantine.jsonl      every refused row: stage (read | filter | dedup), source, item, error, meta,
                          and for filter/dedup the full row (nothing is lost)
    manifest.json         counts, version, schema version, config, item digests (written last)

``version`` hashes the schema version, the corpus config and every source item's name and bytes.
A second run with the same inputs reuses the folder. A run with a few changed or added items reads
and chunks only those: the rows of unchanged items come from the previous version of the same
config (``<home>/corpus/latest-<config key>.json``), with their MinHash signatures; duplicate
decisions (a shuffle of the signatures' keys) and clusters are recomputed over all.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from ray.data.expressions import col

from rayapp._internal.artifacts import read_manifest, staging_dir, write_json_atomic
from rayapp._internal.hashing import stable_hash
from rayapp.config import CorpusConfig
from rayapp.data._clusters import kmeans_groups, pack_groups, tfidf_features
from rayapp.data._dedup import add_signatures, find_duplicates
from rayapp.data._sources import item_digest, list_items, read_item
from rayapp.data._text import chunk_spans, passage_text
from rayapp.data._tokens import token_counter
from rayapp.types import SCHEMA_VERSION

log = logging.getLogger(__name__)

__all__ = ["EmptyCorpusError", "CorpusInfo", "build_corpus", "load_passages", "load_documents"]

_DOC_COLUMNS = ["doc_id", "title", "text", "cluster_key", "meta", "n_words", "n_tokens", "source", "item", "pos"]


class EmptyCorpusError(ValueError):
    """The source produced no usable document."""


@dataclass
class CorpusInfo:
    path: Path
    version: str
    manifest: dict[str, Any]
    cached: bool


def _config_key(cfg: CorpusConfig) -> str:
    return stable_hash(SCHEMA_VERSION, cfg.model_dump(mode="json"))


def _read_rows(item: dict[str, Any], cfg: CorpusConfig) -> list[dict[str, Any]]:
    counter = token_counter(cfg.chunk.tokenizer)
    rows = read_item(item, cfg)
    for pos, r in enumerate(rows):
        r["item"], r["item_idx"], r["pos"] = item["name"], item["idx"], pos
        r["n_tokens"] = counter.count(r["text"]) if not r["error"] else 0
    return rows


def _chunk_doc(row: dict[str, Any], max_tokens: int, min_tokens: int, tokenizer: str) -> list[dict[str, Any]]:
    counter = token_counter(tokenizer)
    out = []
    for i, (s, e, n) in enumerate(chunk_spans(row["text"], max_tokens, counter)):
        if n < min_tokens:
            continue
        out.append({"passage_id": f"{row['doc_id']}-p{i}", "doc_id": row["doc_id"], "title": row["title"],
                    "text": passage_text(row["text"], s, e), "start": s, "end": e, "n_tokens": n})
    return out


def _quarantine_entry(stage: str, error: str, row: dict[str, Any], keep_row: bool) -> dict[str, Any]:
    entry = {"stage": stage, "source": row["source"], "item": row["item"], "pos": int(row["pos"]),
             "error": error, "meta": json.loads(row["meta"])}
    if keep_row:
        entry["row"] = {k: (int(row[k]) if k in ("n_words", "n_tokens", "pos") else row[k]) for k in _DOC_COLUMNS}
    return entry


def _signed(ds, cfg: CorpusConfig):
    return ds.map_batches(add_signatures, fn_kwargs={"cfg": cfg.dedup}, batch_format="numpy")


def _add_order(batch: dict[str, Any]) -> dict[str, Any]:
    """A global source order: item index in the high 32 bits, row position in the item below."""
    batch["order"] = (batch["item_idx"].astype(np.int64) << 32) | batch["pos"].astype(np.int64)
    return batch


def _previous(home: Path, key: str) -> Optional[Path]:
    pointer = Path(home) / "corpus" / f"latest-{key}.json"
    try:
        path = Path(json.loads(pointer.read_text(encoding="utf-8"))["path"])
    except (OSError, ValueError, KeyError):
        return None
    return path if read_manifest(path) is not None else None


def _reused_rows(prev: Path, reuse: set[str]) -> tuple[pa.Table | None, list[dict], list[dict], pa.Table | None]:
    """From the previous version: kept documents, filtered/deduplicated rows, read errors and
    passages of the unchanged items."""
    docs = pq.read_table(prev / "documents")
    docs = docs.filter(pc.is_in(docs["item"], pa.array(sorted(reuse))))
    docs = docs.join(pq.read_table(prev / "signatures"), "doc_id")
    dropped, read_bad = [], []
    for line in (prev / "quarantine.jsonl").read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        if q["item"] in reuse:
            (dropped if "row" in q else read_bad).append(q)
    passages = pq.read_table(prev / "passages")
    passages = passages.filter(pc.is_in(passages["doc_id"], docs["doc_id"]))
    return docs, [q["row"] for q in dropped], read_bad, passages


def build_corpus(cfg: CorpusConfig, home: Path) -> CorpusInfo:
    """Build (or reuse) the corpus version for ``cfg``. Ray must be initialised.

    Bad rows never crash the build: they go to ``quarantine.jsonl`` with a reason and are counted in
    the manifest. A source with no usable document raises :class:`EmptyCorpusError` and leaves
    every earlier version untouched.
    """
    home = Path(home)
    items = list_items(cfg)
    if cfg.max_documents is not None and cfg.kind == "folder":
        items = items[: cfg.max_documents]
    digests = {it["name"]: item_digest(it) for it in items}
    key = _config_key(cfg)
    version = stable_hash(key, sorted(digests.items()))
    final = home / "corpus" / version
    manifest = read_manifest(final)
    if manifest is not None:
        log.info("corpus %s reused (%d passages)", version, manifest["counts"]["passages"])
        return CorpusInfo(final, version, manifest, cached=True)
    if not items:
        raise EmptyCorpusError(f"corpus source is empty: {cfg.kind} source listed no files "
                               f"({cfg.path or cfg.modules}, glob {cfg.glob!r})")
    order = {it["name"]: i for i, it in enumerate(items)}

    prev = _previous(home, key)
    prev_digests = read_manifest(prev)["items"] if prev else {}
    reuse = {n for n, d in digests.items() if prev_digests.get(n) == d}
    to_read = [{**it, "idx": order[it["name"]]} for it in items if it["name"] not in reuse]

    quarantine: list[dict[str, Any]] = []
    parts = []
    n_signed = 0  # rows whose MinHash signature this build computes
    if to_read:
        rows = ray.data.from_items(to_read, override_num_blocks=max(1, min(len(to_read), 16)))
        rows = rows.flat_map(_read_rows, fn_kwargs={"cfg": cfg}).materialize()
        quarantine += [_quarantine_entry("read", r["error"], r, keep_row=False)
                       for r in rows.filter(expr=col("error") != "").take_all()]
        good = rows.filter(expr=col("error") == "").drop_columns(["error"])
        n_signed += good.count()
        parts.append(_signed(good, cfg))
    reused_passages = None
    if reuse:
        docs, dropped_rows, read_bad, reused_passages = _reused_rows(prev, reuse)
        quarantine += read_bad
        # Kept documents bring their signatures; the few filtered or deduplicated rows are re-signed.
        for reused, signed in ((docs.to_pylist(), True), (dropped_rows, False)):
            for r in reused:
                r["item_idx"] = order[r["item"]]
            if reused:
                part = ray.data.from_items(reused, override_num_blocks=max(1, min(len(reused) // 1000, 16)))
                parts.append(part if signed else _signed(part, cfg))
                n_signed += 0 if signed else len(reused)
    docs_ds = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
    docs_ds = docs_ds.map_batches(_add_order, batch_format="numpy").materialize()

    # Length filters, then duplicates among the rows that pass them.
    counts = {"too_short": 0, "too_long": 0, "exact duplicate": 0, "near duplicate": 0}
    drop: dict[str, tuple[str, str]] = {}  # doc_id -> (stage, reason)
    lo, hi = cfg.min_doc_tokens, cfg.max_doc_tokens
    ok = col("n_tokens") >= lo
    for r in docs_ds.filter(expr=col("n_tokens") < lo).select_columns(["doc_id", "n_tokens"]).take_all():
        drop[r["doc_id"]] = ("filter", f"too short: {r['n_tokens']} tokens < corpus.min_doc_tokens={lo}")
        counts["too_short"] += 1
    if hi is not None:
        ok = ok & (col("n_tokens") <= hi)
        for r in docs_ds.filter(expr=col("n_tokens") > hi).select_columns(["doc_id", "n_tokens"]).take_all():
            drop[r["doc_id"]] = ("filter", f"too long: {r['n_tokens']} tokens > corpus.max_doc_tokens={hi}")
            counts["too_long"] += 1
    passing = docs_ds.filter(expr=ok)
    dups = find_duplicates(passing, cfg.dedup)
    if dups:
        wanted = set(dups) | {partner for _, partner in dups.values()}
        id_of = {int(r["order"]): r["doc_id"] for r in docs_ds.select_columns(["order", "doc_id"]).filter(
            lambda r: r["order"] in wanted).take_all()}
        for o, (reason, partner) in dups.items():
            drop[id_of[o]] = ("dedup", f"{reason} of {id_of[partner]}")
            counts[reason] += 1
    if cfg.max_documents is not None and cfg.kind == "stdlib":
        ranked = passing.select_columns(["doc_id", "order"]).sort("order").take_all()
        survivors = [r["doc_id"] for r in ranked if r["doc_id"] not in drop]
        for doc_id in survivors[cfg.max_documents:]:
            drop[doc_id] = ("filter", f"over corpus.max_documents={cfg.max_documents}")

    dropped_ids = set(drop)
    if dropped_ids:
        for r in docs_ds.filter(lambda r: r["doc_id"] in dropped_ids).take_all():
            quarantine.append(_quarantine_entry(*drop[r["doc_id"]], row=r, keep_row=True))
    kept = docs_ds.filter(lambda r: r["doc_id"] not in dropped_ids).drop_columns(["order"]).materialize()
    n_docs = kept.count()
    if n_docs == 0:
        reasons = sorted({q["error"] for q in quarantine})[:5]
        raise EmptyCorpusError(
            f"corpus is empty: {len(items)} source items gave 0 usable documents "
            f"({len(quarantine)} quarantined{': ' + '; '.join(reasons) if reasons else ''})"
        )

    with staging_dir(final) as tmp:
        kept.drop_columns(["item_idx", "text_hash", "bands"]).write_parquet(str(tmp / "documents"))
        kept.select_columns(["doc_id", "text_hash", "bands"]).write_parquet(str(tmp / "signatures"))
        reused_ids = set(reused_passages.column("doc_id").to_pylist()) if reused_passages is not None else set()
        fresh = kept.filter(lambda r: r["doc_id"] not in reused_ids) if reused_ids else kept
        passages = fresh.flat_map(_chunk_doc, fn_kwargs={"max_tokens": cfg.chunk.max_tokens,
                                                         "min_tokens": cfg.chunk.min_tokens,
                                                         "tokenizer": cfg.chunk.tokenizer}).materialize()
        passages.write_parquet(str(tmp / "passages"))
        n_chunked = passages.count()
        n_passages = n_chunked
        if reused_passages is not None and reused_passages.num_rows:
            pq.write_table(reused_passages, tmp / "passages" / "reused.parquet")
            n_passages += reused_passages.num_rows

        meta = kept.select_columns(["doc_id", "title", "text", "cluster_key", "n_tokens", "item_idx", "pos"]
                                   ).to_pandas().sort_values(["item_idx", "pos"])
        by = cfg.clusters.by
        if by == "auto":
            by = "source" if (meta["cluster_key"] != "").all() else "kmeans"
        if by == "kmeans":
            doc_texts = [f"{t}. {x[:1000]}" for t, x in zip(meta["title"], meta["text"])]
            if cfg.clusters.features == "tfidf":
                vecs = tfidf_features(doc_texts)
            else:
                from rayapp.config import EmbedConfig
                from rayapp.data.embed import embed_texts

                vecs = embed_texts(doc_texts, EmbedConfig())
            group_keys = kmeans_groups(vecs, meta["n_tokens"].tolist(), cfg.clusters.max_tokens, cfg.clusters.kmeans_iters)
        else:
            group_keys = meta["cluster_key"].tolist()
        clusters = pack_groups(group_keys, meta["doc_id"].tolist(), meta["n_tokens"].astype(int).tolist(),
                               cfg.clusters.max_tokens)
        pq.write_table(pa.Table.from_pylist(clusters), tmp / "clusters.parquet")
        quarantine.sort(key=lambda q: (order.get(q["item"], -1), q["pos"]))
        with open(tmp / "quarantine.jsonl", "w", encoding="utf-8") as f:
            for q in quarantine:
                f.write(json.dumps(q, ensure_ascii=False) + "\n")
        manifest = {
            "kind": "corpus",
            "version": version,
            "schema_version": SCHEMA_VERSION,
            "config_key": key,
            "config": cfg.model_dump(mode="json"),
            "counts": {
                "items": len(items),
                "items_read": len(to_read),
                "items_reused": len(reuse),
                "rows_signed": n_signed,
                "documents": n_docs,
                "passages": n_passages,
                "passages_chunked": n_chunked,
                "clusters": len(clusters),
                "quarantined": len(quarantine),
                "read_errors": sum(q["stage"] == "read" for q in quarantine),
                **{k.replace(" ", "_"): v for k, v in counts.items()},
            },
            "clustered_by": by,
            "items": digests,
        }
        write_json_atomic(tmp / "manifest.json", manifest)
    write_json_atomic(home / "corpus" / f"latest-{key}.json", {"path": str(final), "version": version})
    log.info("corpus %s built: %s", version, manifest["counts"])
    return CorpusInfo(final, version, manifest, cached=False)


def load_passages(corpus_dir: Path, columns: list[str] | None = None) -> pa.Table:
    """All passages of a corpus version, sorted by passage_id (a stable order for indexes)."""
    table = pq.read_table(Path(corpus_dir) / "passages", columns=columns)
    return table.sort_by("passage_id")


def load_documents(corpus_dir: Path, columns: list[str] | None = None) -> pa.Table:
    """All kept documents of a corpus version, sorted by doc_id."""
    return pq.read_table(Path(corpus_dir) / "documents", columns=columns).sort_by("doc_id")
