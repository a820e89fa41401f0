"""Benchmark: the trained cross-encoder reranker vs the MiniLM bi-encoder (TREC-QA, PubMedQA).

    python -m jobs.bench_reranker --config configs/bench_reranker.yaml
Needs ../shared/data (or $RAYAPP_DATA_DIR). Trains the reranker on Ray Train in the same run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rayapp._internal.jobs import run_job
from rayapp.rerank.bench import BenchRerankerConfig


def _run(cfg: BenchRerankerConfig, _path) -> None:
    from rayapp._internal.ray_utils import init_ray
    from rayapp.eval import write_report
    from rayapp.rerank.bench import bench_reranker

    init_ray(cfg.ray)
    r = bench_reranker(cfg)
    t, p = r["trecqa"], r["pubmedqa"]
    rows = [["bi-encoder (MiniLM)", t["bi_encoder"]["map"], t["bi_encoder"]["mrr"], p["bi_encoder"]["ndcg@10"],
             p["bi_encoder"]["recall@1"]],
            ["cross-encoder reranker (trained)", t["reranker"]["map"], t["reranker"]["mrr"],
             p["bi_encoder+reranker"]["ndcg@10"], p["bi_encoder+reranker"]["recall@1"]]]
    write_report(cfg.results_dir, "bench_reranker", {**r, "config": cfg.model_dump(mode="json")},
                 ["model", "TREC-QA MAP", "TREC-QA MRR", "PubMedQA nDCG@10", "PubMedQA R@1"], rows,
                 notes=f"reranker: MiniLM + 1-logit head, {cfg.steps} steps x {cfg.batch_size} groups "
                       f"(1 positive + {cfg.hard_negatives} negatives), {r['rows']} train rows, {r['train_s']} s; "
                       f"PubMedQA: first {cfg.pubmed_queries} test questions, the reranker reorders the bi-encoder's top "
                       f"{cfg.pubmed_candidates} of the 500 test abstracts.")
    print((Path(cfg.results_dir) / "bench_reranker.md").read_text())
    print(f"TREC-QA MAP gain of the reranker over the bi-encoder: {r['trecqa_map_gain']:+.4f}")


def main(argv=None) -> int:
    return run_job("rayapp bench-reranker", BenchRerankerConfig, "configs/bench_reranker.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
