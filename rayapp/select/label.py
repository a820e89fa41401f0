"""Tag corpus documents with several task/domain labels from a few labelled ones (SGMFS in the platform).

1. Features per document (title + text): TF-IDF (``features: tfidf``, the vocabulary's terms are the
   features) or sentence embeddings (``features: embedding``, :func:`rayapp.data.embed_texts`).
2. SGMFS is fitted on every seed-labelled document plus up to ``max_fit_rows`` others (sampled,
   seeded): its soft labels F label those rows, and its feature scores pick ``n_selected`` features.
3. Documents outside the fitted sample get the mean soft labels of their ``neighbors`` nearest fitted
   documents on the selected features (z-scored): the soft labels propagate.
4. A document carries every label with a score >= ``threshold`` (at least its best one); its
   ``domain`` is its best label. :func:`rayapp.data.pairs.weak_pairs` copies that domain onto the
   embedder's training rows, and ``StageConfig.batch_by: domain`` batches by it (semi-homogeneous).

Seed labels are JSONL ``{"doc_id": ..., "labels": [...]}``, ``doc_id`` being the corpus's id or the
source's own id (``orig_id``, from ``CorpusConfig.id_field``); a bad line (not JSON, no such document,
no label, a repeated document) is quarantined with its line number and counted, never dropped silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from rayapp.config import EmbedConfig, RayConfig, StrictModel

__all__ = ["LabelingConfig", "LabelCorpusConfig", "read_seed_labels", "document_features", "label_documents", "label_corpus",
           "read_doc_labels"]


class LabelingConfig(StrictModel):
    """How documents are labelled (features, SGMFS, propagation, threshold)."""

    features: Literal["tfidf", "embedding"] = "tfidf"
    max_terms: int = Field(default=1000, ge=2)  # tfidf vocabulary size
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    n_selected: int = Field(default=200, ge=1)
    max_fit_rows: int = Field(default=2000, ge=2)
    neighbors: int = Field(default=5, ge=1)
    threshold: float = Field(default=0.5, gt=0, le=1)
    sgmfs: dict[str, Any] = Field(default_factory=dict)  # SGMFS keyword arguments
    seed: int = 0

    @field_validator("sgmfs")
    @classmethod
    def _sgmfs_args(cls, v: dict[str, Any]) -> dict[str, Any]:
        import inspect

        from rayapp.select.sgmfs import SGMFS

        known = set(inspect.signature(SGMFS).parameters)
        unknown = sorted(set(v) - known)
        if unknown:
            raise ValueError(f"unknown SGMFS argument(s) {unknown}; known: {sorted(known)}")
        return v


class LabelCorpusConfig(LabelingConfig):
    corpus: Path  # a built corpus folder (documents/*.parquet)
    seeds: Path  # JSONL {doc_id, labels}
    output_dir: Path = Path("results/label_corpus")
    ray: RayConfig = Field(default_factory=RayConfig)


def read_seed_labels(path: Path, doc_ids: dict[str, str]) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    """(corpus doc_id -> labels, quarantined lines) from a seed-label JSONL file; ``doc_ids`` maps
    every accepted name of a document (its doc_id, its source id) to its corpus doc_id."""
    from rayapp._internal.jsonl import read_jsonl_rows

    seen: set[str] = set()

    def parse(r: Any, _n: int) -> dict[str, Any]:
        if not isinstance(r, dict) or not isinstance(r.get("doc_id"), str):
            raise ValueError("needs a string doc_id")
        labels = r.get("labels")
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x.strip() for x in labels):
            raise ValueError("labels must be a non-empty list of strings")
        doc_id = doc_ids.get(r["doc_id"])
        if doc_id is None:
            raise ValueError(f"no document {r['doc_id']!r} in the corpus")
        if doc_id in seen:
            raise ValueError(f"document {r['doc_id']!r} is labelled twice")
        seen.add(doc_id)
        return {"doc_id": doc_id, "labels": sorted({x.strip() for x in labels})}

    rows, bad = read_jsonl_rows(Path(path), parse, errors=(ValueError, TypeError))
    return {r["doc_id"]: r["labels"] for r in rows}, bad


def document_features(texts: list[str], cfg: LabelingConfig) -> tuple[np.ndarray, list[str]]:
    """(features, feature names) for each text."""
    if cfg.features == "embedding":
        from rayapp.data.embed import embed_texts

        X = np.asarray(embed_texts(texts, cfg.embed), dtype=np.float64)
        return X, [f"dim{j}" for j in range(X.shape[1])]
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(max_features=cfg.max_terms, sublinear_tf=True, stop_words="english", min_df=2)
    try:
        X = vec.fit_transform(texts)
    except ValueError:  # every term is in fewer than two documents
        vec = TfidfVectorizer(max_features=cfg.max_terms, sublinear_tf=True)
        X = vec.fit_transform(texts)
    return X.toarray(), list(vec.get_feature_names_out())


def label_documents(X: np.ndarray, seed_rows: dict[int, list[str]], cfg: LabelingConfig
                    ) -> tuple[np.ndarray, list[str], np.ndarray, dict[str, Any]]:
    """(scores n x c, label names, selected feature indices, info) for feature rows ``X`` and
    ``seed_rows`` (row index -> labels)."""
    from sklearn.neighbors import NearestNeighbors

    from rayapp.select.data import MultiLabelDataError
    from rayapp.select.selectors import top_features
    from rayapp.select.sgmfs import SGMFS, standardize

    if not seed_rows:
        raise MultiLabelDataError("no usable seed label: label at least one document per label")
    names = sorted({x for labels in seed_rows.values() for x in labels})
    if len(names) < 2:
        raise MultiLabelDataError(f"the seed labels name one label ({names[0]!r}); multi-label tagging needs two or more")
    n = len(X)
    rng = np.random.default_rng(cfg.seed)
    seeded = np.array(sorted(seed_rows), dtype=np.int64)
    others = rng.permutation(np.setdiff1d(np.arange(n), seeded))[: max(0, cfg.max_fit_rows - len(seeded))]
    fit_rows = np.sort(np.concatenate([seeded, others]))
    Y = np.zeros((len(fit_rows), len(names)), dtype=np.int8)
    lab = np.isin(fit_rows, seeded)
    col = {x: j for j, x in enumerate(names)}
    for i, r in enumerate(fit_rows):
        for x in seed_rows.get(int(r), []):
            Y[i, col[x]] = 1
    model = SGMFS(**cfg.sgmfs).fit(X[fit_rows], Y, lab)
    selected = top_features(model.scores_, min(cfg.n_selected, X.shape[1]))
    scores = np.zeros((n, len(names)))
    scores[fit_rows] = model.soft_labels_
    rest = np.setdiff1d(np.arange(n), fit_rows)
    if len(rest):
        Z, mu, sd = standardize(X[fit_rows][:, selected])
        nn = NearestNeighbors(n_neighbors=min(cfg.neighbors, len(fit_rows))).fit(Z)
        idx = nn.kneighbors(standardize(X[rest][:, selected], mu, sd)[0], return_distance=False)
        scores[rest] = model.soft_labels_[idx].mean(1)
    info = {"fit_rows": int(len(fit_rows)), "propagated_rows": int(len(rest)), "iterations": model.n_iter_,
            "objective_first_last": [model.objective_[0], model.objective_[-1]]}
    return scores, names, selected, info


def label_corpus(cfg: LabelCorpusConfig) -> dict[str, Any]:
    """Label every document of ``cfg.corpus``; writes ``doc_labels.jsonl``, ``quarantine.jsonl`` and
    ``report.json`` in ``cfg.output_dir`` and returns the report."""
    from rayapp._internal.artifacts import write_json_atomic
    from rayapp.data.corpus import load_documents

    docs = load_documents(Path(cfg.corpus), ["doc_id", "title", "text", "meta"]).to_pylist()
    if not docs:
        raise ValueError(f"{cfg.corpus}: the corpus has no documents")
    ids = [d["doc_id"] for d in docs]
    orig = [str(json.loads(d.get("meta") or "{}").get("orig_id") or "") for d in docs]
    names_of = {**{o: i for o, i in zip(orig, ids) if o}, **{i: i for i in ids}}
    seeds, bad = read_seed_labels(cfg.seeds, names_of)
    row_of = {d: i for i, d in enumerate(ids)}
    X, feature_names = document_features([f"{d.get('title') or ''}\n{d.get('text') or ''}" for d in docs], cfg)
    scores, names, selected, info = label_documents(X, {row_of[d]: v for d, v in seeds.items()}, cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {x: 0 for x in names}
    with open(out / "doc_labels.jsonl.tmp", "w", encoding="utf-8") as f:
        for i, doc_id in enumerate(ids):
            s = scores[i]
            keep = [names[j] for j in np.argsort(-s, kind="stable") if s[j] >= cfg.threshold] or [names[int(np.argmax(s))]]
            for x in keep:
                counts[x] += 1
            f.write(json.dumps({"doc_id": doc_id, "orig_id": orig[i] or None, "labels": keep, "domain": keep[0], "seeded": doc_id in seeds,
                                "scores": {x: round(float(v), 4) for x, v in zip(names, s)}}) + "\n")
    (out / "doc_labels.jsonl.tmp").replace(out / "doc_labels.jsonl")
    with open(out / "quarantine.jsonl", "w", encoding="utf-8") as f:
        for b in bad:
            f.write(json.dumps(b) + "\n")
    report = {"documents": len(docs), "seeded": len(seeds), "quarantined": len(bad), "labels": names,
              "documents_per_label": counts, "features": cfg.features, "n_features": int(X.shape[1]),
              "selected_features": [feature_names[j] for j in selected[:50]], **info}
    write_json_atomic(out / "report.json", report)
    return report


def read_doc_labels(path: Path) -> dict[str, str]:
    """doc_id -> domain (best label) from a ``doc_labels.jsonl`` file written by :func:`label_corpus`."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    r = json.loads(line)
                    out[r["doc_id"]] = r["domain"]
                except (ValueError, KeyError, TypeError) as e:
                    raise ValueError(f"{path}:{n}: not a doc_labels row ({e})") from None
    return out
