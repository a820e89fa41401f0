"""Benchmark of the trained cross-encoder against the bi-encoder it starts from, in one run.

Train rows: TREC-QA train (each question's judged non-answers as hard negatives) + PubMedQA train.
PubMedQA's negatives are mined by the training-data job (``pubmed_negatives: mined``): the MiniLM
bi-encoder ranks the other train abstracts, KaLM-Embedding V1's ranking-consistency filter drops a
question whose own abstract ranks below ``filter_topk``, and ``k`` negatives are sampled from the
ranks ``[rank_lo, rank_hi)``. ``random`` takes random other abstracts (the first runs' setting).

Tests: TREC-QA test answer selection (each question ranks its own candidates; MAP, MRR) and
PubMedQA test (the first ``pubmed_queries`` questions; the bi-encoder retrieves the top
``pubmed_candidates`` of the 500 test abstracts, the reranker reorders them; nDCG@10, Recall@1).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field

from rayapp.config import EmbedConfig, RayConfig, StrictModel
from rayapp.data.pairs import PairsConfig

__all__ = ["BenchRerankerConfig", "bench_reranker"]


class BenchRerankerConfig(StrictModel):
    model: str = "minilm"
    data_dir: Optional[Path] = None
    steps: int = 120
    batch_size: int = 16
    hard_negatives: int = 3
    lr: float = 3e-5
    max_length: int = 256
    #: at most this many PubMedQA train questions (each gives 1 row, or a row per block of mined negatives)
    pubmedqa_rows: int = 500
    #: PubMedQA negatives: ``mined`` by the training-data job (``pubmed_pairs``) or ``random`` abstracts
    pubmed_negatives: Literal["mined", "random"] = "mined"
    #: mining over the 500 train abstracts: 9 negatives from the bi-encoder's ranks 0-19 (the
    #: positive excluded), used in blocks of ``hard_negatives`` (3 rows per question)
    pubmed_pairs: PairsConfig = Field(default_factory=lambda: PairsConfig(k=9, rank_lo=0, rank_hi=20, filter_topk=50))
    embed: EmbedConfig = Field(default_factory=lambda: EmbedConfig(actors=1, num_cpus_per_actor=1.0, torch_threads=2))
    #: TREC-QA: one row per (positive, block of k judged negatives), so every negative is used
    all_trec_negatives: bool = True
    pubmed_candidates: int = 10
    pubmed_queries: int = 200
    workers: int = 1
    cpus_per_worker: float = 1.5
    torch_threads: int = 2
    seed: int = 0
    results_dir: Path = Path("results/bench_reranker")
    ray: RayConfig = RayConfig()


def _block_rows(pairs, k: int, seed: int, task: str) -> list[dict[str, Any]]:
    """(question, positive, k of its negatives) rows covering every negative once per positive;
    the last block is topped up at random from the question's other negatives. ``pairs``:
    ``{query, pos: [...], neg: [...]}``."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in pairs:
        negs = [n for n in p["neg"] if n not in p["pos"]]
        if len(negs) < k:
            continue
        for pos in p["pos"]:
            order = rng.permutation(len(negs)).tolist()
            for s in range(0, len(order), k):
                block = [negs[i] for i in order[s: s + k]]
                block += [negs[i] for i in order[: k - len(block)]]
                rows.append({"query": p["query"], "pos": pos, "negs": block, "task": task})
    return rows


def _pubmed_rows(cfg: BenchRerankerConfig, pub_train) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """PubMedQA train rows: negatives mined by the training-data job (Ray must be up) or random."""
    from rayapp.data.pairs import build_training_rows, qa_pairs
    from rayapp.train.bench import qa_training_rows

    if cfg.pubmed_negatives == "random":
        return qa_training_rows(pub_train, "pubmedqa", "", cfg.hard_negatives, cfg.seed)[: cfg.pubmedqa_rows], {}
    mined, report = build_training_rows(qa_pairs(pub_train, "question-abstract", "biomedical"),
                                        [d["text"] for d in pub_train.docs], cfg.embed, cfg.pubmed_pairs)
    mined = mined[: cfg.pubmedqa_rows]
    rows = _block_rows([{"query": r["query"], "pos": r["pos"], "neg": r["negs"]} for r in mined],
                       cfg.hard_negatives, cfg.seed, "pubmedqa")
    return rows, {k: report[k] for k in ("pairs_in", "kept", "dropped", "negatives", "settings")}


def _rerank_run(score, queries, candidates: dict[str, list[str]], text: dict[str, str]) -> dict[str, dict[str, float]]:
    run = {}
    for q in queries:
        ids = candidates.get(q["qid"], [])
        if ids:
            run[q["qid"]] = dict(zip(ids, map(float, score(q["text"], [text[d] for d in ids]))))
    return run


def bench_reranker(cfg: BenchRerankerConfig) -> dict[str, Any]:
    """Train the reranker on Ray Train, then score base bi-encoder vs reranker; Ray must be up."""
    from rayapp.data.sets import load_pubmedqa, load_trecqa
    from rayapp.embed import Embedder, format_query
    from rayapp.eval.retrieval import candidate_run, dense_run, evaluate_run
    from rayapp.models import resolve_embedder
    from rayapp.rerank import CrossEncoder
    from rayapp.train.bench import PUBMED_INSTRUCTION, TREC_INSTRUCTION, qa_training_rows
    from rayapp.train.config import TrainRerankerConfig
    from rayapp.train.reranker import train_reranker

    import torch

    out = Path(cfg.results_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    trec_train, trec_test = load_trecqa(cfg.data_dir, "train"), load_trecqa(cfg.data_dir, "test")
    pub_train, pub_test = load_pubmedqa(cfg.data_dir, "train"), load_pubmedqa(cfg.data_dir, "test")
    rows = (_block_rows(trec_train.pairs, cfg.hard_negatives, cfg.seed, "trecqa") if cfg.all_trec_negatives
            else qa_training_rows(trec_train, "trecqa", "", cfg.hard_negatives, cfg.seed))
    pub_rows, mining = _pubmed_rows(cfg, pub_train)
    rows += pub_rows
    data = out / "train_rows.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tcfg = TrainRerankerConfig(model=cfg.model, data=data, steps=cfg.steps, batch_size=cfg.batch_size,
                               hard_negatives=cfg.hard_negatives, lr=cfg.lr, max_length=cfg.max_length,
                               workers=cfg.workers, cpus_per_worker=cfg.cpus_per_worker, torch_threads=cfg.torch_threads,
                               checkpoint_every=cfg.steps, seed=cfg.seed, output_dir=out / "runs")
    import shutil

    shutil.rmtree(out / "runs", ignore_errors=True)
    t0 = time.perf_counter()
    trained = train_reranker(tcfg)
    train_s = time.perf_counter() - t0

    torch.set_num_threads(cfg.torch_threads)
    bi = Embedder.from_pretrained(resolve_embedder(cfg.model))
    ce = CrossEncoder.from_pretrained(trained["path"], cfg.max_length)
    res: dict[str, Any] = {"rows": len(rows), "trecqa_rows": sum(r["task"] == "trecqa" for r in rows),
                           "pubmedqa_rows": len(pub_rows), "pubmedqa_mining": mining,
                           "train_s": round(train_s, 1), "train": trained.get("metrics", {})}
    # TREC-QA: each question ranks its own candidates
    enc_q = lambda ts, ins: bi.encode([format_query(t, ins) for t in ts], 64, 64)  # noqa: E731
    enc_d = lambda ts: bi.encode(ts, 64, 256)  # noqa: E731
    t0 = time.perf_counter()
    bi_run = candidate_run(lambda ts: enc_q(ts, TREC_INSTRUCTION), enc_d, trec_test.queries, trec_test.docs, trec_test.qrels)
    bi_s = time.perf_counter() - t0
    text = {d["doc_id"]: d["text"] for d in trec_test.docs}
    t0 = time.perf_counter()
    ce_run = _rerank_run(ce.score, trec_test.queries, {q: list(r) for q, r in trec_test.qrels.items()}, text)
    ce_s = time.perf_counter() - t0
    res["trecqa"] = {"bi_encoder": {**evaluate_run(trec_test.qrels, bi_run), "seconds": round(bi_s, 1)},
                     "reranker": {**evaluate_run(trec_test.qrels, ce_run), "seconds": round(ce_s, 1)}}
    # PubMedQA: bi-encoder top-N of the test abstracts, then the reranker reorders them
    queries = pub_test.queries[: cfg.pubmed_queries]
    qrels = {q["qid"]: pub_test.qrels[q["qid"]] for q in queries}
    dense = dense_run(lambda ts: enc_q(ts, PUBMED_INSTRUCTION), enc_d, queries, pub_test.docs, cfg.pubmed_candidates)
    text = {d["doc_id"]: d["text"] for d in pub_test.docs}
    t0 = time.perf_counter()
    rr = _rerank_run(ce.score, queries, {q: list(r) for q, r in dense.items()}, text)
    rr_s = time.perf_counter() - t0
    res["pubmedqa"] = {"bi_encoder": evaluate_run(qrels, dense, ks=(1, 10)),
                       "bi_encoder+reranker": {**evaluate_run(qrels, rr, ks=(1, 10)), "seconds": round(rr_s, 1)}}
    res["trecqa_map_gain"] = round(res["trecqa"]["reranker"]["map"] - res["trecqa"]["bi_encoder"]["map"], 4)
    return res
