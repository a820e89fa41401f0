"""Extraction rows: ``{id, question, passages: [str], answers: [str], reference?, answer_format?}`` in JSONL.

``answers`` are the gold short answers (LEAR's answer reward takes the best F1 over them);
``reference`` is a full-sentence answer (SEER's conciseness expert compares evidence with it);
``answer_format`` narrows the answer prompt (PubMedQA: "yes, no or maybe").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from rayapp._internal.jsonl import read_jsonl_rows

__all__ = ["ExtractDataError", "read_extract_rows", "write_extract_rows", "pubmedqa_extract_rows"]


class ExtractDataError(ValueError):
    """An extraction data file is missing or has no usable row."""


def _row(r: Any, n: int) -> dict[str, Any]:
    if not isinstance(r, dict):
        raise ValueError("a row must be a JSON object")
    q = r.get("question")
    if not isinstance(q, str) or not q.strip():
        raise ValueError("'question' must be a non-empty string")
    passages = r.get("passages")
    if not isinstance(passages, list) or not passages or not all(isinstance(p, str) and p.strip() for p in passages):
        raise ValueError("'passages' must be a non-empty list of non-empty strings")
    answers = r.get("answers")
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise ValueError("'answers' must be a non-empty string or list of strings")
    ref = r.get("reference")
    if ref is not None and not isinstance(ref, str):
        raise ValueError("'reference' must be a string")
    fmt = r.get("answer_format")
    if fmt is not None and not isinstance(fmt, str):
        raise ValueError("'answer_format' must be a string")
    return {"id": str(r.get("id", n)), "question": q, "passages": passages, "answers": answers,
            "reference": ref or answers[0], "answer_format": fmt}


def read_extract_rows(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, bad): every unusable line is returned with its number and reason, never dropped silently."""
    path = Path(path)
    if not path.is_file():
        raise ExtractDataError(f"extraction data not found: {path}")
    rows, bad = read_jsonl_rows(path, _row)
    if not rows:
        first = f", first: line {bad[0]['line']} {bad[0]['error']}" if bad else ""
        raise ExtractDataError(f"{path}: no usable extraction row ({len(bad)} bad lines{first})")
    return rows, bad


def write_extract_rows(rows: list[dict[str, Any]], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)
    return path


def pubmedqa_extract_rows(split: str = "train", data_dir: Optional[str] = None, limit: Optional[int] = None,
                          max_passage_words: Optional[int] = None) -> list[dict[str, Any]]:
    """PubMedQA PQA-L as extraction rows: the abstract's paragraphs are the passages, the gold
    answer is yes/no/maybe and the long answer is the reference. ``max_passage_words`` truncates
    each paragraph (small models on CPU)."""
    from rayapp.data.sets import load_pubmedqa

    qa = load_pubmedqa(data_dir, split)  # type: ignore[arg-type]
    docs = {d["doc_id"]: d for d in qa.docs}
    rows = []
    for q in qa.queries[:limit]:
        doc = docs[next(iter(qa.qrels[q["qid"]]))]
        passages = [p for p in doc["text"].split("\n\n") if p.strip()]
        if max_passage_words:
            passages = [" ".join(p.split()[:max_passage_words]) for p in passages]
        rows.append({"id": q["qid"], "question": q["text"], "passages": passages, "answers": [q["answers"][0]],
                     "reference": q["answers"][1], "answer_format": "yes, no or maybe"})
    return rows
