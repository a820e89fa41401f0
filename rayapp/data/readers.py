"""Document readers for the corpus build: JSONL, parquet, BEIR folders, BGE fine-tune JSONL and
Hugging Face ``datasets``. Pure Python (no Ray): the corpus job wires them into Ray Data.

Every document reader yields rows of the contract in :mod:`rayapp.data._sources`
(:func:`~rayapp.data._sources.good_row` / :func:`~rayapp.data._sources.bad_row`). A record that
cannot be used (invalid UTF-8, malformed JSON, not an object, missing or empty text, oversized)
becomes a bad row whose ``error`` says where it sits and why (``"line 4: malformed JSON: ..."``),
so that every input record is accounted for: a good row or a quarantined one, never dropped.

Problems with the source itself (file not found, a required column absent, a dataset that cannot
be loaded) are raised when the reader is called, before the first row, not in the middle of a job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from rayapp.data._sources import SourceError, _decode, bad_row, good_row

__all__ = ["BeirSet", "read_jsonl_docs", "read_parquet_docs", "read_beir", "read_bge_pairs", "read_hf_docs"]

DEFAULT_MAX_RECORD_BYTES = 2_000_000
_BOM = b"\xef\xbb\xbf"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class _Fields:
    """Which record fields hold the text, title, original id and cluster key."""

    text: str = "text"
    title: str = "title"
    id: str | None = None
    cluster: str | None = None
    require_id: bool = False


# ------------------------------------------------------------------------------- shared checks
def _doc_row(rec: dict[str, Any], where: str, source: str, fields: _Fields, default_cluster: str,
             max_bytes: int | None = None, **meta: Any) -> dict[str, Any]:
    """One record (already a mapping) -> a good row, or a bad row saying ``"<where>: <reason>"``.

    ``max_bytes`` limits the UTF-8 size of the text (JSONL checks the whole line instead, before
    parsing it, and passes ``None``).
    """
    if fields.id is not None and rec.get(fields.id) is not None:
        meta["orig_id"] = str(rec[fields.id])
    elif fields.require_id:
        return bad_row(source, f"{where}: missing id field {fields.id!r}", **meta)
    if fields.text not in rec:
        return bad_row(source, f"{where}: missing text field {fields.text!r}", **meta)
    text = rec[fields.text]
    if text is not None and not isinstance(text, str):
        return bad_row(source, f"{where}: text field {fields.text!r} is not a string "
                               f"({type(text).__name__})", **meta)
    if not text or not text.strip():
        return bad_row(source, f"{where}: empty text", **meta)
    if max_bytes is not None and (size := len(text.encode("utf-8"))) > max_bytes:
        return bad_row(source, f"{where}: oversized: {size} bytes > max_record_bytes={max_bytes}", **meta)
    title = rec.get(fields.title)
    title = "" if title is None else str(title).strip()
    cluster = rec.get(fields.cluster) if fields.cluster is not None else None
    cluster = default_cluster if cluster is None or str(cluster) == "" else str(cluster)
    return good_row(title, text, cluster, source, **meta)


def _eol_len(chunk: bytes) -> int:
    return 2 if chunk.endswith(b"\r\n") else 1 if chunk.endswith(b"\n") else 0


def _lines(path: Path, max_bytes: int) -> Iterator[tuple[int, bytes | None, int]]:
    """``(line number, bytes without the line end, size)`` per line; bytes is ``None`` when the line
    is longer than ``max_bytes`` (its rest is counted, not kept in memory)."""
    limit = max_bytes + 2  # room for "\r\n"
    with path.open("rb") as f:
        n = 0
        while line := f.readline(limit):
            n += 1
            size, last = len(line), line
            while size >= limit and not last.endswith(b"\n"):  # the line goes on
                last = f.readline(_CHUNK)
                if not last:
                    break
                size += len(last)
            size -= _eol_len(last)
            yield n, (line[: len(line) - _eol_len(line)] if size <= max_bytes else None), size


def _json_records(path: Path, max_bytes: int) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """``(line number, JSON object, "")`` per non-blank line, or ``(n, None, reason)`` for a bad one.

    Blank (whitespace-only) lines are not records and are skipped.
    """
    for n, data, size in _lines(path, max_bytes):
        if data is None:
            yield n, None, f"oversized: {size} bytes > max_record_bytes={max_bytes}"
            continue
        if n == 1 and data.startswith(_BOM):
            data = data[len(_BOM):]
        if not data.strip():
            continue
        text, err = _decode(data)
        if text is None:
            yield n, None, err
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            yield n, None, f"malformed JSON: {e}"
            continue
        if not isinstance(obj, dict):
            yield n, None, "not a JSON object"
            continue
        yield n, obj, ""


def _need_file(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{what} not found: {p}")
    return p


# --------------------------------------------------------------------------------------- JSONL
def _jsonl_rows(path: Path, source: str, fields: _Fields, default_cluster: str,
                max_bytes: int) -> Iterator[dict[str, Any]]:
    for n, rec, reason in _json_records(path, max_bytes):
        meta = {"line": n, "path": str(path)}
        if rec is None:
            yield bad_row(source, f"line {n}: {reason}", **meta)
        else:
            yield _doc_row(rec, f"line {n}", source, fields, default_cluster, **meta)


def read_jsonl_docs(path: str | Path, *, text_field: str = "text", title_field: str = "title",
                    id_field: str | None = None, cluster_field: str | None = None,
                    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                    source_name: str | None = None) -> Iterator[dict[str, Any]]:
    """Rows from a JSONL file of documents, one JSON object per line.

    The file is read line by line in binary; a line longer than ``max_record_bytes`` (line end not
    counted) is quarantined without being held in memory. Blank lines are not records and yield
    nothing; every other line yields exactly one row, good or bad. Bad-row reasons:
    ``"line N: invalid UTF-8 at byte B"``, ``"line N: malformed JSON: <msg>"``,
    ``"line N: not a JSON object"``, ``"line N: missing text field 'text'"``,
    ``"line N: empty text"``, ``"line N: oversized: S bytes > max_record_bytes=M"``.

    ``source`` is ``"jsonl:<source_name or file name>"``; ``meta`` holds ``line``, ``path`` and,
    when ``id_field`` is given and present, ``orig_id``. The cluster key is the ``cluster_field``
    value if given and present, else the file's stem. A missing title is ``""``.

    Raises ``FileNotFoundError`` at call time when the file does not exist.
    """
    p = _need_file(path, "JSONL file")
    fields = _Fields(text_field, title_field, id_field, cluster_field)
    return _jsonl_rows(p, f"jsonl:{source_name or p.name}", fields, p.stem, max_record_bytes)


# ------------------------------------------------------------------------------------- parquet
def _parquet_rows(pf: Any, path: Path, fields: _Fields, batch_size: int, columns: list[str],
                  max_bytes: int) -> Iterator[dict[str, Any]]:
    source, n = f"parquet:{path.name}", 0
    for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
        for rec in batch.to_pylist():
            yield _doc_row(rec, f"row {n}", source, fields, path.stem, max_bytes, row=n, path=str(path))
            n += 1


def read_parquet_docs(path: str | Path, *, text_field: str = "text", title_field: str = "title",
                      id_field: str | None = None, cluster_field: str | None = None,
                      batch_size: int = 4096,
                      max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[dict[str, Any]]:
    """Rows from a parquet file of documents, read ``batch_size`` rows at a time with pyarrow.

    Same rules as :func:`read_jsonl_docs`, with ``"row N"`` (0-based) in place of ``"line N"``:
    a null or blank text is ``"row N: empty text"``, a text over ``max_record_bytes`` UTF-8 bytes
    is ``"row N: oversized: ..."``. ``source`` is ``"parquet:<file name>"``, ``meta`` holds
    ``row``, ``path`` and ``orig_id``. The title column is optional.

    Raises at call time: ``FileNotFoundError`` for a missing file, ``ValueError`` naming the column
    and the file when the text column (or a given id / cluster column) is absent.
    """
    import pyarrow.parquet as pq

    p = _need_file(path, "parquet file")
    pf = pq.ParquetFile(p)
    names = set(pf.schema_arrow.names)
    for kind, col in (("text", text_field), ("id", id_field), ("cluster", cluster_field)):
        if col is not None and col not in names:
            raise ValueError(f"{p}: no {kind} column {col!r} (columns: {sorted(names)})")
    columns = [c for c in dict.fromkeys([text_field, title_field, id_field, cluster_field])
               if c is not None and c in names]
    fields = _Fields(text_field, title_field, id_field, cluster_field)
    return _parquet_rows(pf, p, fields, batch_size, columns, max_record_bytes)


# ---------------------------------------------------------------------------------------- BEIR
@dataclass
class BeirSet:
    """A BEIR dataset folder, read.

    ``docs``/``bad``: good and quarantined rows from ``corpus.jsonl`` (``meta["orig_id"]`` is the
    corpus ``_id``); ``queries``: query ``_id`` -> text; ``qrels``: query id -> {original corpus
    ``_id``: score}, as in the file (score-0 lines included); ``doc_id_of``: original corpus
    ``_id`` -> rayapp ``doc_id`` (a content hash, so two ``_id`` with the same title and text
    share one ``doc_id``).
    """

    docs: list[dict[str, Any]] = field(default_factory=list)
    bad: list[dict[str, Any]] = field(default_factory=list)
    queries: dict[str, str] = field(default_factory=dict)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    doc_id_of: dict[str, str] = field(default_factory=dict)


def _read_beir_queries(path: Path) -> dict[str, str]:
    """``_id`` -> ``text``; any bad line is a ``ValueError`` naming the file and the line."""
    out: dict[str, str] = {}
    for n, rec, reason in _json_records(path, DEFAULT_MAX_RECORD_BYTES):
        if rec is not None:
            qid, text = rec.get("_id"), rec.get("text")
            if qid is None or not isinstance(text, str) or not text.strip():
                reason = "missing '_id'" if qid is None else "missing or empty 'text'"
        if reason:
            raise ValueError(f"{path}: line {n}: {reason}")
        out[str(qid)] = text
    return out


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``query-id<TAB>corpus-id<TAB>score`` lines (optional header) -> {query id: {corpus id: score}}."""
    out: dict[str, dict[str, int]] = {}
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                parts = line.rstrip("\r\n").split("\t")
                if not line.strip() or (n == 1 and parts[0] == "query-id"):
                    continue
                if len(parts) != 3:
                    raise ValueError(f"{path}: line {n}: expected 3 tab-separated fields "
                                     f"'query-id corpus-id score', got {len(parts)}: {line.strip()!r}")
                qid, did, score = parts
                try:
                    out.setdefault(qid, {})[did] = int(score)
                except ValueError:
                    raise ValueError(f"{path}: line {n}: score {score!r} is not an integer") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: invalid UTF-8 at byte {e.start}") from None
    return out


def read_beir(folder: str | Path, split: str = "test") -> BeirSet:
    """Read a BEIR folder: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

    Corpus lines go through the same checks as :func:`read_jsonl_docs` (fields ``_id``, ``title``,
    ``text``; source ``"beir:<folder name>"``, cluster key the folder name); a line without ``_id``
    or with an ``_id`` already seen is quarantined too (``"line N: duplicate _id 'x'"``).
    Queries and qrels are ground truth, so a bad line there raises ``ValueError`` naming the file
    and the line. A missing file raises ``FileNotFoundError`` naming its path.
    """
    root = Path(folder).expanduser()
    corpus = _need_file(root / "corpus.jsonl", "BEIR corpus")
    queries = _need_file(root / "queries.jsonl", "BEIR queries")
    qrels = _need_file(root / "qrels" / f"{split}.tsv", f"BEIR qrels for split {split!r}")
    out = BeirSet(queries=_read_beir_queries(queries), qrels=_read_qrels(qrels))
    fields = _Fields("text", "title", "_id", None, require_id=True)
    source = f"beir:{root.name}"
    for row in _jsonl_rows(corpus, source, fields, root.name, DEFAULT_MAX_RECORD_BYTES):
        if row["error"]:
            out.bad.append(row)
            continue
        meta = json.loads(row["meta"])
        orig = meta["orig_id"]
        if orig in out.doc_id_of:
            out.bad.append(bad_row(source, f"line {meta['line']}: duplicate _id {orig!r}", **meta))
            continue
        out.doc_id_of[orig] = row["doc_id"]
        out.docs.append(row)
    return out


# ------------------------------------------------------------------------------ BGE fine-tune
def _str_list(value: Any, name: str) -> tuple[list[str], str]:
    """A list of non-empty strings (a single string is wrapped), or a reason."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        return [], f"{name} is not a list of strings"
    for i, s in enumerate(items):
        if not isinstance(s, str):
            return [], f"{name}[{i}] is not a string"
        if not s.strip():
            return [], f"{name}[{i}] is empty"
    return items, ""


def _scores(rec: dict[str, Any], name: str, texts: list[str]) -> tuple[list[float] | None, str]:
    """``<name>_scores`` as floats (``None`` when absent), or a reason."""
    key = f"{name}_scores"
    value = rec.get(key)
    if value is None:
        return None, ""
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        return None, f"{key} is not a list of numbers"
    if len(value) != len(texts):
        return None, f"{key} has {len(value)} entries, {name} has {len(texts)}"
    return [float(v) for v in value], ""


def _bge_pair(rec: dict[str, Any], n: int) -> tuple[dict[str, Any] | None, str]:
    """One fine-tune record -> the good-row dict, or ``(None, reason)``."""
    query = rec.get("query")
    if query is None:
        return None, "missing query"
    if not isinstance(query, str) or not query.strip():
        return None, "query is not a non-empty string"
    pos, err = _str_list(rec.get("pos", []), "pos")
    if err or not pos:
        return None, err or "empty pos list"
    neg, err = _str_list(rec.get("neg") or [], "neg")
    if err:
        return None, err
    pos_scores, err = _scores(rec, "pos", pos)
    if err:
        return None, err
    neg_scores, err = _scores(rec, "neg", neg)
    if err:
        return None, err
    for key in ("prompt", "type"):
        if rec.get(key) is not None and not isinstance(rec[key], str):
            return None, f"{key} is not a string"
    return {"query": query, "pos": pos, "neg": neg, "pos_scores": pos_scores, "neg_scores": neg_scores,
            "prompt": rec.get("prompt"), "type": rec.get("type"), "line": n}, ""


def read_bge_pairs(path: str | Path, *, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Read a FlagEmbedding (BGE) fine-tune JSONL file into ``(good, bad)``.

    A good row is ``{"query", "pos", "neg", "pos_scores", "neg_scores", "prompt", "type",
    "line"}``: ``pos``/``neg`` are lists of strings (a single string is wrapped, a missing ``neg`` is
    ``[]``), scores are lists of floats or ``None``, ``prompt``/``type`` strings or ``None``.
    A bad row is a quarantine row (:func:`~rayapp.data._sources.bad_row`, source
    ``"bge:<file name>"``, meta ``line``/``path``) with reasons like ``"line N: malformed JSON: ..."``,
    ``"line N: missing query"``, ``"line N: empty pos list"``, ``"line N: neg[2] is not a string"``,
    ``"line N: pos_scores has 2 entries, pos has 1"``. Blank lines are not records.
    """
    p = _need_file(path, "BGE fine-tune file")
    good: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    for n, rec, reason in _json_records(p, max_record_bytes):
        pair, reason = _bge_pair(rec, n) if rec is not None else (None, reason)
        if pair is None:
            bad.append(bad_row(f"bge:{p.name}", f"line {n}: {reason}", line=n, path=str(p)))
        else:
            good.append(pair)
    return good, bad


# ---------------------------------------------------------------------------- Hugging Face
def _load_hf(name: str, config_name: str | None, split: str, data_files: Any, streaming: bool,
             load_kwargs: dict[str, Any]) -> Any:
    """``datasets.load_dataset``, with a not-found / unreachable-hub failure as a :class:`SourceError`."""
    import datasets

    label = f"{name!r}" + (f" (config {config_name!r})" if config_name else "")
    try:
        return datasets.load_dataset(name, config_name, split=split, data_files=data_files,
                                     streaming=streaming, **load_kwargs)
    except OSError as e:  # DatasetNotFoundError, FileNotFoundError, ConnectionError, HTTP errors
        first = (str(e).strip().splitlines() or [""])[0]
        raise SourceError(
            f"Hugging Face dataset {label}, split {split!r}: cannot be loaded ({type(e).__name__}: "
            f"{first}). The dataset may not exist, or the Hugging Face Hub may be unreachable from "
            "here; for local files use name='json' / 'parquet' with data_files=..."
        ) from None


def _hf_rows(ds: Any, source: str, fields: _Fields, default_cluster: str, split: str,
             max_bytes: int) -> Iterator[dict[str, Any]]:
    for n, rec in enumerate(ds):
        yield _doc_row(rec, f"row {n}", source, fields, default_cluster, max_bytes, row=n, split=split)


def read_hf_docs(name: str, *, split: str = "train", config_name: str | None = None,
                 data_files: Any = None, text_field: str = "text", title_field: str = "title",
                 id_field: str | None = None, cluster_field: str | None = None,
                 streaming: bool = False, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                 **load_kwargs: Any) -> Iterator[dict[str, Any]]:
    """Rows from a Hugging Face dataset, loaded by name (hub or a packaged builder).

    Calls ``datasets.load_dataset(name, config_name, split=split, data_files=data_files,
    streaming=streaming, **load_kwargs)`` when called (not lazily), so a dataset that does not
    exist or a hub that cannot be reached raises :class:`~rayapp.data._sources.SourceError` before
    any row; a text column absent from a known schema raises ``ValueError`` naming it. Local files
    load with ``name="json"`` / ``"parquet"`` and ``data_files=``. Rows follow the rules of
    :func:`read_parquet_docs` (``"row N: empty text"``...); ``source`` is ``"hf:<name>"`` (plus
    ``/<config>``), ``meta`` holds ``row``, ``split`` and ``orig_id``; the cluster key defaults to
    the config name, else the dataset name.
    """
    ds = _load_hf(name, config_name, split, data_files, streaming, load_kwargs)
    columns = getattr(ds, "column_names", None)  # None for a streamed dataset of unknown schema
    if columns is not None:
        for kind, col in (("text", text_field), ("id", id_field), ("cluster", cluster_field)):
            if col is not None and col not in columns:
                raise ValueError(f"Hugging Face dataset {name!r}: no {kind} column {col!r} (columns: {columns})")
    source = f"hf:{name}" + (f"/{config_name}" if config_name else "")
    fields = _Fields(text_field, title_field, id_field, cluster_field)
    return _hf_rows(ds, source, fields, config_name or name, split, max_record_bytes)
