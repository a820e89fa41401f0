"""Corpus sources: list the items to read (cheap, on the driver) and read one item into rows.

Every row has the same columns, good or bad, so that a Ray Data ``flat_map`` can carry both: a bad
row has a non-empty ``error`` and is routed to the quarantine file, never dropped silently.
"""

from __future__ import annotations

import ast
import inspect
import json
import sysconfig
from pathlib import Path
from typing import Any, Iterator

from rayapp._internal.hashing import file_digest, stable_hash
from rayapp.config import CorpusConfig
from rayapp.data._text import clean_text, count_words

# Stdlib folders that are tests, tools or demos, not library documentation.
_STDLIB_SKIP = {
    "test", "tests", "idlelib", "lib2to3", "ensurepip", "turtledemo", "site-packages",
    "__pycache__", "pydoc_data", "__phello__", "venv",
}


class SourceError(ValueError):
    """The source itself cannot be read (unknown module, missing folder)."""


def _doc_row(**kw: Any) -> dict[str, Any]:
    row = {"doc_id": "", "title": "", "text": "", "cluster_key": "", "meta": "{}", "n_words": 0,
           "source": "", "error": ""}
    row.update(kw)
    return row


def bad_row(source: str, reason: str, **meta: Any) -> dict[str, Any]:
    """A quarantine row: where it came from and why it was refused."""
    return _doc_row(source=source, error=reason, meta=json.dumps(meta, default=str))


def good_row(title: str, text: str, cluster_key: str, source: str, **meta: Any) -> dict[str, Any]:
    text = clean_text(text)
    return _doc_row(
        doc_id=stable_hash("doc", title, text),
        title=title,
        text=text,
        cluster_key=cluster_key,
        meta=json.dumps(meta, default=str, sort_keys=True),
        n_words=count_words(text),
        source=source,
    )


# ----------------------------------------------------------------------------------------- stdlib
def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _module_file(root: Path, name: str) -> Path:
    rel = Path(*name.split("."))
    for cand in (root / rel.with_suffix(".py"), root / rel / "__init__.py"):
        if cand.is_file():
            return cand
    raise SourceError(
        f"corpus.modules: no Python source for stdlib module {name!r} under {root} "
        "(C extension modules have no source to read)"
    )


def _all_stdlib_modules(root: Path, package: str = "") -> list[str]:
    """Public modules with Python source under ``root`` (or under ``package`` inside it)."""
    names = []
    base = root.joinpath(*package.split(".")) if package else root
    for p in sorted(base.rglob("*.py")):
        rel = p.relative_to(root)
        if any(part in _STDLIB_SKIP or part.startswith("_") and part != "__init__.py" for part in rel.parts):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and all(part.isidentifier() for part in parts):
            names.append(".".join(parts))
    return names


def list_items(cfg: CorpusConfig) -> list[dict[str, str]]:
    """The items the source will read, each ``{"path", "name"}``, in a stable order."""
    if cfg.kind == "stdlib":
        root = _stdlib_root()
        if cfg.modules == ["*"]:
            names = _all_stdlib_modules(root)
        else:  # a package stands for itself and its public submodules
            names = []
            for n in cfg.modules:
                f = _module_file(root, n)
                names += _all_stdlib_modules(root, n) if f.name == "__init__.py" else [n]
            names = list(dict.fromkeys(names))
        return [{"path": str(_module_file(root, n)), "name": n} for n in names]
    if cfg.kind == "hf":
        if not cfg.hf_name:
            raise SourceError("corpus.hf_name: required when corpus.kind is 'hf'")
        files = [str(Path(f).expanduser()) for f in cfg.data_files or []]
        # a hub dataset's content cannot be hashed before loading: its name, config, split and
        # local data files (by their bytes) stand for it
        digest = stable_hash(cfg.hf_name, cfg.hf_config, cfg.split,
                             [file_digest(f) for f in files if Path(f).is_file()])
        return [{"path": "", "name": cfg.hf_name, "digest": digest}]
    if cfg.path is None:
        raise SourceError(f"corpus.path: required when corpus.kind is {cfg.kind!r}")
    root = Path(cfg.path).expanduser()
    if cfg.kind == "beir":
        corpus = root / "corpus.jsonl"
        if not corpus.is_file():
            raise SourceError(f"corpus.path: no BEIR corpus.jsonl in {root}")
        return [{"path": str(corpus), "name": "corpus.jsonl"}]
    if cfg.kind in ("jsonl", "parquet") and root.is_file():
        return [{"path": str(root), "name": root.name}]
    if not root.is_dir():
        raise SourceError(f"corpus.path: not found: {root}")
    files = sorted(p for p in root.glob(cfg.glob) if p.is_file())
    return [{"path": str(p), "name": str(p.relative_to(root))} for p in files]


def fingerprint(cfg: CorpusConfig, items: list[dict[str, str]]) -> str:
    """A hash of every item's name and bytes: a changed, added or removed file changes it."""
    return stable_hash([(it["name"], file_digest(it["path"])) for it in items], length=32)


def _decode(data: bytes) -> tuple[str | None, str]:
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError as e:
        return None, f"invalid UTF-8 at byte {e.start}"


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    return f"{node.name}({ast.unparse(node.args)})"


def _public(name: str) -> bool:
    return not name.startswith("_")


def _read_module(path: str, module: str) -> Iterator[dict[str, Any]]:
    """Module docstring, public functions and public classes (with their methods) as documents."""
    src = f"stdlib:{module}"
    text, err = _decode(Path(path).read_bytes())
    if text is None:
        yield bad_row(src, err, path=path)
        return
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as e:
        yield bad_row(src, f"syntax error at line {e.lineno}: {e.msg}", path=path)
        return
    doc = ast.get_docstring(tree)
    if doc:
        yield good_row(module, f"Module {module}.\n\n{inspect.cleandoc(doc)}", module, src, path=path, lineno=1)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(node.name):
            d = ast.get_docstring(node)
            if d:
                yield good_row(f"{module}.{node.name}", f"{module}.{_signature(node)}\n\n{inspect.cleandoc(d)}",
                               module, src, path=path, lineno=node.lineno)
        elif isinstance(node, ast.ClassDef) and _public(node.name):
            parts = []
            d = ast.get_docstring(node)
            if d:
                parts.append(inspect.cleandoc(d))
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(sub.name):
                    sd = ast.get_docstring(sub)
                    if sd:
                        parts.append(f"{node.name}.{_signature(sub)}: {inspect.cleandoc(sd)}")
            if parts:
                body = "\n\n".join(parts)
                yield good_row(f"{module}.{node.name}", f"class {module}.{node.name}\n\n{body}",
                               module, src, path=path, lineno=node.lineno)


def _read_file(path: str, name: str, max_bytes: int) -> Iterator[dict[str, Any]]:
    src = f"file:{name}"
    p = Path(path)
    size = p.stat().st_size
    if size > max_bytes:
        yield bad_row(src, f"oversized: {size} bytes > corpus.max_file_bytes={max_bytes}", path=path)
        return
    text, err = _decode(p.read_bytes())
    if text is None:
        yield bad_row(src, err, path=path)
        return
    if not text.strip():
        yield bad_row(src, "empty text", path=path)
        return
    cluster = str(Path(name).parent) if str(Path(name).parent) != "." else "<root>"
    yield good_row(name, text, cluster, src, path=path)


def item_digest(item: dict[str, str]) -> str:
    """What identifies an item's content: its bytes, or the digest its source gave it."""
    return item.get("digest") or file_digest(item["path"])


def read_item(item: dict[str, str], cfg: CorpusConfig) -> list[dict[str, Any]]:
    """Read one listed item into document rows (good ones and quarantine ones)."""
    from rayapp.data import readers

    fields = {"text_field": cfg.text_field, "title_field": cfg.title_field, "id_field": cfg.id_field,
              "cluster_field": cfg.cluster_field, "max_record_bytes": cfg.max_file_bytes}
    try:
        if cfg.kind == "stdlib":
            return list(_read_module(item["path"], item["name"]))
        if cfg.kind == "folder":
            return list(_read_file(item["path"], item["name"], cfg.max_file_bytes))
        if cfg.kind == "jsonl":
            return list(readers.read_jsonl_docs(item["path"], source_name=item["name"], **fields))
        if cfg.kind == "parquet":
            return list(readers.read_parquet_docs(item["path"], **fields))
        if cfg.kind == "beir":  # the corpus only; queries and qrels are read by evaluation (read_beir)
            return list(readers.read_jsonl_docs(item["path"], text_field="text", title_field="title",
                                                id_field="_id", source_name=f"beir:{Path(item['path']).parent.name}",
                                                max_record_bytes=cfg.max_file_bytes))
        return list(readers.read_hf_docs(cfg.hf_name, split=cfg.split, config_name=cfg.hf_config,
                                         data_files=cfg.data_files, **fields))
    except OSError as e:
        return [bad_row(item["name"], f"unreadable: {e}", path=item["path"])]
