"""Loaders for the shared evaluation and training sets, read in place (never copied).

Every loader returns a :class:`QASet`: documents as :func:`rayapp.data._sources.good_row` rows,
queries ``{qid, text, answers}``, qrels ``{qid: {doc_id: grade}}`` and contrastive pairs
``{qid, query, pos, neg}`` whose texts are the documents' (cleaned) texts, so that a positive can
be found in the corpus by equality.

The data folder is the ``data_dir`` argument, else ``$RAYAPP_DATA_DIR``, else ``<repo>/../shared/data``
(the layout described in that folder's README.md; each set's SOURCE.md gives the row counts).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from rayapp.data._sources import good_row

__all__ = ["QASet", "default_data_dir", "load_pubmedqa", "load_trecqa", "load_nq_open", "load_flashrag_sample"]

_REPO = Path(__file__).resolve().parents[2]


@dataclass
class QASet:
    """One data set in the common shape (see the module docstring); ``stats`` holds its counts."""

    name: str
    docs: list[dict[str, Any]]
    queries: list[dict[str, Any]]
    qrels: dict[str, dict[str, int]]
    pairs: list[dict[str, Any]]
    stats: dict[str, int] = field(default_factory=dict)


def default_data_dir() -> Path:
    """``$RAYAPP_DATA_DIR`` if set, else ``<repo>/../shared/data``; FileNotFoundError when absent."""
    env = os.environ.get("RAYAPP_DATA_DIR")
    path = Path(env).expanduser() if env else _REPO.parent / "shared" / "data"
    if not path.is_dir():
        where = "$RAYAPP_DATA_DIR" if env else "the default <repo>/../shared/data"
        raise FileNotFoundError(
            f"data folder not found: {path} ({where}); pass data_dir= or set RAYAPP_DATA_DIR"
        )
    return path


def _set_dir(data_dir: Optional[os.PathLike | str], folder: str) -> Path:
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    path = root / folder
    if not path.is_dir():
        raise FileNotFoundError(f"data set folder not found: {path} (expected {folder}/ under {root})")
    return path


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# --------------------------------------------------------------------------------------- PubMedQA
def load_pubmedqa(data_dir: Optional[os.PathLike | str] = None,
                  split: Literal["all", "test", "train"] = "all") -> QASet:
    """PubMedQA PQA-L: one document per question (its context paragraphs, joined by blank lines).

    ``test`` is the official 500-question split (``test_ground_truth.json``), ``train`` the other
    500, ``all`` the 1,000. The qid is the PMID; the document's title is ``PMID <pmid>`` (not the
    question, so that a title -> body weak pair never leaks the question) and its cluster_key is the
    PMID (one abstract per cluster). The qrel is the question's own abstract (grade 1); the pair is
    (question, [abstract]) with no negatives; answers are ``[final_decision, LONG_ANSWER]``.
    Documents are those of the split's questions only, so a train corpus holds no test abstract.
    """
    if split not in ("all", "test", "train"):
        raise ValueError(f"pubmedqa: split must be 'all', 'test' or 'train', not {split!r}")
    folder = _set_dir(data_dir, "pubmedqa_labeled")
    data = json.loads((folder / "ori_pqal.json").read_text(encoding="utf-8"))
    test = set(json.loads((folder / "test_ground_truth.json").read_text(encoding="utf-8")))
    docs, queries, qrels, pairs = [], [], {}, []
    n_contexts = 0
    for pmid, item in data.items():
        if split != "all" and (pmid in test) != (split == "test"):
            continue
        n_contexts += len(item["CONTEXTS"])
        doc = good_row(f"PMID {pmid}", "\n\n".join(item["CONTEXTS"]), pmid, "pubmedqa", pmid=pmid,
                       year=item.get("YEAR"), labels=item.get("LABELS", []), meshes=item.get("MESHES", []))
        docs.append(doc)
        queries.append({"qid": pmid, "text": item["QUESTION"],
                        "answers": [item["final_decision"], item["LONG_ANSWER"]]})
        qrels[pmid] = {doc["doc_id"]: 1}
        pairs.append({"qid": pmid, "query": item["QUESTION"], "pos": [doc["text"]], "neg": []})
    stats = {"questions": len(queries), "documents": len(docs), "contexts": n_contexts}
    return QASet(f"pubmedqa-{split}", docs, queries, qrels, pairs, stats)


# ---------------------------------------------------------------------------------------- TREC-QA
def load_trecqa(data_dir: Optional[os.PathLike | str] = None,
                split: Literal["train", "dev", "test"] = "train") -> QASet:
    """TREC-QA answer-sentence selection (Wang et al.): every candidate sentence is a document.

    Questions get qids ``<split>-<nnnn>`` in file order. qrels carry the 0/1 labels of every judged
    (question, sentence); a pair is (question, label-1 sentences, label-0 sentences of the same
    question). A question with no positive stays in ``queries`` but has no pair (counted in
    ``stats["no_positive"]``). A sentence judged under several questions is one document (its
    cluster_key is the first question's qid). There are no short answers: ``answers`` is empty.
    """
    if split not in ("train", "dev", "test"):
        raise ValueError(f"trecqa: split must be 'train', 'dev' or 'test', not {split!r}")
    path = _set_dir(data_dir, "trecqa_wang_anssel") / f"{split}.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    qids: dict[str, str] = {}
    docs: dict[str, dict[str, Any]] = {}
    qrels: dict[str, dict[str, int]] = {}
    for r in rows:
        qid = qids.setdefault(r["qtext"], f"{split}-{len(qids):04d}")
        doc = good_row("", r["atext"], qid, "trecqa", first_qid=qid)
        doc = docs.setdefault(doc["doc_id"], doc)
        grades = qrels.setdefault(qid, {})
        grades[doc["doc_id"]] = max(grades.get(doc["doc_id"], 0), int(r["label"]))
    queries = [{"qid": qid, "text": q, "answers": []} for q, qid in qids.items()]
    pairs = []
    for q in queries:
        grades = qrels[q["qid"]]
        pos = [docs[d]["text"] for d, g in grades.items() if g > 0]
        if pos:
            neg = [docs[d]["text"] for d, g in grades.items() if g == 0]
            pairs.append({"qid": q["qid"], "query": q["text"], "pos": pos, "neg": neg})
    stats = {
        "rows": len(rows), "label_1": sum(r["label"] == "1" for r in rows),
        "label_0": sum(r["label"] == "0" for r in rows), "questions": len(queries), "with_positive": len(pairs),
        "no_positive": len(queries) - len(pairs), "documents": len(docs),
        "positives": sum(len(p["pos"]) for p in pairs), "negatives": sum(len(p["neg"]) for p in pairs),
    }
    return QASet(f"trecqa-{split}", list(docs.values()), queries, qrels, pairs, stats)


# ---------------------------------------------------------------------------------------- NQ-open
def load_nq_open(data_dir: Optional[os.PathLike | str] = None) -> QASet:
    """NQ-open dev (3,610 questions): queries with their short answers only; no documents."""
    items = _read_jsonl(_set_dir(data_dir, "nq_open") / "NQ-open.dev.jsonl")
    queries = [{"qid": f"nq-dev-{i:04d}", "text": it["question"], "answers": list(it["answer"])}
               for i, it in enumerate(items)]
    return QASet("nq-open-dev", [], queries, {}, [], {"questions": len(queries)})


# --------------------------------------------------------------------------------------- FlashRAG
def _wiki_row(item: dict[str, Any]) -> dict[str, Any]:
    """``"\\"Title\\"\\nTitle text..."`` (Pyserini style) -> a document titled ``Title``."""
    head, _, body = item["contents"].partition("\n")
    title = head.strip().strip('"')
    return good_row(title, body, title, "flashrag-wiki", wiki_id=item["id"])


def load_flashrag_sample(data_dir: Optional[os.PathLike | str] = None) -> QASet:
    """FlashRAG quick start: 1,000 random DPR Wikipedia passages as documents and 17 NQ questions.

    The passages are not aligned to the questions (SOURCE.md: 4 of 17 answers occur in the corpus),
    so there are no qrels and no pairs; ``stats["answer_in_corpus"]`` counts questions with a
    golden answer occurring (case-sensitively) in some passage's title or text.
    """
    folder = _set_dir(data_dir, "flashrag_quickstart")
    docs = [_wiki_row(it) for it in _read_jsonl(folder / "wiki_sample_corpus.jsonl")]
    queries = [{"qid": str(it["id"]), "text": it["question"], "answers": list(it["golden_answers"])}
               for it in _read_jsonl(folder / "nq_test.jsonl")]
    blob = "\n".join(f"{d['title']}\n{d['text']}" for d in docs)
    found = sum(any(a in blob for a in q["answers"]) for q in queries)
    stats = {"questions": len(queries), "documents": len(docs), "answer_in_corpus": found}
    return QASet("flashrag-sample", docs, queries, {}, [], stats)

