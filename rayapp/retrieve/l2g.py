"""FunnelRAG local-to-global (L2G) distillation: teach the document pre-ranker the post-ranker's view.

For a training query the funnel keeps ``candidate_docs`` documents (cluster BM25 -> pre-ranker);
the post-ranker (the cross-encoder) scores *every* passage of them, and :func:`rollup_scores`
turns those into document scores S(d) = alpha * max + (1 - alpha) * mean. The pre-ranker (a
bi-encoder) is then trained on Ray Train toward S over each query's candidate list with
:func:`rayapp.train.losses.kl_distill_loss` (KL(softmax(S / tau_t) || softmax(s / tau_s))), no
contrastive term: :func:`l2g_rows` writes the rows, :func:`train_l2g` runs the stage. The new
embedder must re-embed the documents (build an index with it) before the funnel uses it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from pydantic import Field

from rayapp.config import FunnelConfig, RayConfig, StrictModel
from rayapp.retrieve.funnel import FunnelRetriever, rollup_scores

__all__ = ["l2g_rows", "l2g_kl", "train_l2g", "run_l2g", "L2GConfig", "read_queries"]


def l2g_rows(funnel: FunnelRetriever, queries: Sequence[str], candidate_docs: int, alpha: float,
             instruction: str = "") -> tuple[list[dict[str, Any]], int]:
    """(rows, skipped): one training row per query whose funnel keeps ``candidate_docs`` documents;
    ``pos`` is the best document by the rolled-up teacher score, ``negs`` the others (best first),
    ``pos_score``/``neg_scores`` the teacher scores. Queries with fewer candidates are skipped."""
    ix = funnel.index
    rows, skipped = [], 0
    for q in queries:
        r = funnel.run(q, docs=candidate_docs, passages=None)
        teacher = rollup_scores(r.passage_scores, [int(ix.passage_doc[p]) for p in r.passages], alpha)
        if len(teacher) < candidate_docs:
            skipped += 1
            continue
        order = sorted(teacher, key=lambda d: (-teacher[d], d))
        rows.append({"query": q, "pos": ix.doc_texts[order[0]], "negs": [ix.doc_texts[d] for d in order[1:]],
                     "pos_score": teacher[order[0]], "neg_scores": [teacher[d] for d in order[1:]],
                     "task": "l2g", "instruction": instruction,
                     "doc_ids": [ix.document_ids[d] for d in order]})
    return rows, skipped


def l2g_kl(model_path: str, rows: list[dict[str, Any]], tau_s: float, tau_t: float = 1.0,
           max_doc_tokens: int = 256) -> float:
    """Mean KL(teacher || student) over the rows' candidate lists for the embedder ``model_path``:
    the quantity L2G training lowers (lower = the pre-ranker orders documents like the post-ranker)."""
    import torch

    from rayapp.embed import Embedder, format_query
    from rayapp.train.losses import kl_distill_loss

    m = Embedder.from_pretrained(model_path)
    q = m.encode([format_query(r["query"], r["instruction"]) for r in rows], 32, 64)
    docs = [[r["pos"], *r["negs"]] for r in rows]
    flat = m.encode([d for ds in docs for d in ds], 32, max_doc_tokens).reshape(len(rows), len(docs[0]), -1)
    student = torch.from_numpy(np.einsum("bd,bcd->bc", q, flat))
    teacher = torch.tensor([[r["pos_score"], *r["neg_scores"]] for r in rows], dtype=student.dtype)
    return float(kl_distill_loss(student, teacher, tau_s=tau_s, tau_t=tau_t))


def train_l2g(rows: list[dict[str, Any]], init: str, out_dir: Path, steps: int, batch_size: int, lr: float,
              tau: float, workers: int = 1, cpus_per_worker: float = 1.0, torch_threads: int = 1,
              max_doc_tokens: int = 256, seed: int = 0, ray: Optional[dict] = None) -> dict[str, Any]:
    """Write the rows and train the pre-ranker ``init`` on them (one Ray Train stage ``l2g``: KL
    to the rolled-up scores only); returns the stage summary (``path`` is the new embedder)."""
    from rayapp.train.config import TrainEmbedderConfig
    from rayapp.train.embedder import train_embedder

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / "l2g_rows.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    k = len(rows[0]["negs"])
    cfg = TrainEmbedderConfig(
        model=init, workers=workers, cpus_per_worker=cpus_per_worker, torch_threads=torch_threads,
        checkpoint_every=steps, log_every=max(1, steps // 5), seed=seed, output_dir=out_dir / "runs",
        stages=[{"name": "l2g", "data": str(data), "steps": steps, "batch_size": batch_size, "lr": lr, "tau": tau,
                 "hard_negatives": k, "contrastive_weight": 0.0, "distill_weight": 1.0,
                 "max_passage_tokens": max_doc_tokens, "cross_device_negatives": False}],
        **({"ray": ray} if ray else {}))
    (summary,) = train_embedder(cfg)
    return summary


class L2GConfig(StrictModel):
    """``python -m jobs.train_l2g``: distil the funnel's post-ranker into its pre-ranker.

    ``index`` is a funnel index folder (``index.funnel: true``); ``queries`` a JSONL file with a
    ``query`` (or ``question`` / ``text``) field per line, or plain text lines. The pre-ranker is
    the index's own embedder; the result is a new embedder folder (``output_dir/runs/l2g``)."""

    index: Path
    queries: Path
    max_queries: Optional[int] = Field(default=None, ge=1)
    instruction: str = ""
    funnel: FunnelConfig
    candidate_docs: int = Field(default=8, ge=2)
    steps: int = Field(default=100, ge=1)
    batch_size: int = Field(default=8, ge=1)
    lr: float = Field(default=2e-5, gt=0)
    tau: float = Field(default=0.05, gt=0)
    max_doc_tokens: int = Field(default=256, ge=16)
    workers: int = Field(default=1, ge=1)
    cpus_per_worker: float = Field(default=1.0, gt=0)
    torch_threads: int = Field(default=1, ge=1)
    output_dir: Path = Path("results/train_l2g")
    ray: RayConfig = RayConfig()


def read_queries(path: Path) -> list[str]:
    """Queries from JSONL (``query`` / ``question`` / ``text`` field) or plain lines; a JSON line
    without one of those fields is an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"queries file not found: {path}")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            rec = json.loads(line)
            q = next((rec[k] for k in ("query", "question", "text") if isinstance(rec.get(k), str)), None)
            if not q:
                raise ValueError(f"{path}:{n}: no 'query', 'question' or 'text' field")
            out.append(q)
        else:
            out.append(line)
    return out


def run_l2g(cfg: L2GConfig) -> dict[str, Any]:
    """The whole L2G job: funnel over ``cfg.queries`` -> teacher rows -> KL-only training of the
    index's embedder -> ``{rows, skipped, kl_before, kl_after, stage}`` (also ``output_dir/summary.json``).
    Ray must be initialised. Too few usable queries is a :class:`~rayapp.train.embedder.TrainingDataError`."""
    from rayapp._internal.artifacts import write_json_atomic
    from rayapp.index import LoadedIndex
    from rayapp.models import load_sentence_transformer
    from rayapp.train.embedder import TrainingDataError

    ix = LoadedIndex(cfg.index)
    emb = ix.manifest["embedder"]
    st = load_sentence_transformer(emb["path"], emb["max_seq_length"])
    funnel = FunnelRetriever(ix, cfg.funnel, lambda q: st.encode(q, normalize_embeddings=True))
    queries = read_queries(cfg.queries)[: cfg.max_queries]
    rows, skipped = l2g_rows(funnel, queries, cfg.candidate_docs, cfg.funnel.alpha, cfg.instruction)
    if len(rows) < cfg.batch_size:
        raise TrainingDataError(f"{cfg.queries}: only {len(rows)} queries kept {cfg.candidate_docs} candidate "
                                f"documents ({skipped} skipped); need at least batch_size={cfg.batch_size}")
    before = l2g_kl(emb["path"], rows, cfg.tau, max_doc_tokens=cfg.max_doc_tokens)
    summary = train_l2g(rows, emb["path"], cfg.output_dir, cfg.steps, cfg.batch_size, cfg.lr, cfg.tau, cfg.workers,
                        cfg.cpus_per_worker, cfg.torch_threads, cfg.max_doc_tokens)
    after = l2g_kl(summary["path"], rows, cfg.tau, max_doc_tokens=cfg.max_doc_tokens)
    out = {"rows": len(rows), "skipped": skipped, "kl_before": before, "kl_after": after, "stage": summary}
    write_json_atomic(Path(cfg.output_dir) / "summary.json", out)
    return out
