"""Benchmark: KaLM recipe variants vs base MiniLM and sentence-transformers' MNRL, same steps/batch.

    python -m jobs.bench_train_quality --config configs/bench_train_quality.yaml
Trains on TREC-QA train (+ PubMedQA train), evaluates TREC-QA test MAP/MRR/nDCG@10 (answer
selection) and PubMedQA test nDCG@10 (retrieval from the test abstracts). Needs ../shared/data.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rayapp._internal.jobs import run_job
from rayapp.train.bench import BenchQualityConfig


def _run(cfg: BenchQualityConfig, _path) -> None:
    from rayapp._internal.ray_utils import init_ray
    from rayapp.eval import write_report
    from rayapp.train.bench import bench_quality

    init_ray(cfg.ray)
    r = bench_quality(cfg)
    base = r["variants"]["base"]["trecqa_map"]
    keys = ["trecqa_map", "trecqa_mrr", "trecqa_ndcg@10", "pubmedqa_ndcg@10", "pubmedqa_recall@10"]
    rows = [[name] + [round(v[k], 4) for k in keys]
            + ["-".join(f"{x:.3f}" for x in r["spread"][name]["trecqa_map"]), round(v["trecqa_map"] - base, 4), v["train_s"]]
            for name, v in r["variants"].items()]
    goals = "; ".join(f"seed {sd}: {g}" for sd, g in r["goal_per_seed"].items())
    write_report(cfg.results_dir, "bench_train_quality", {**r, "config": cfg.model_dump(mode="json")},
                 ["variant"] + keys + ["TREC-QA MAP min-max over seeds", "MAP - base", "train s"], rows,
                 notes=f"means over seeds {cfg.seeds}; {r['rows']} training rows {r['tasks']}; {cfg.steps} steps x "
                       f"batch {cfg.batch_size}, {cfg.hard_negatives} hard negatives, tau {cfg.tau}. Goals per seed: {goals}.")
    print((Path(cfg.results_dir) / "bench_train_quality.md").read_text())
    v = r["variants"]
    for name in v:
        if name != "base":
            print(f"{name}: TREC-QA MAP {v[name]['trecqa_map']:.4f} (base {base:.4f}, ratio {v[name]['trecqa_map'] / base:.3f})")
    print(f"goals per seed: {goals}")


def main(argv=None) -> int:
    return run_job("rayapp bench-train-quality", BenchQualityConfig, "configs/bench_train_quality.yaml", _run, argv,
                   __doc__)


if __name__ == "__main__":
    sys.exit(main())
