"""Benchmark: faiss IVF and HNSW vs exact (flat) search at 1,000,000 x 384, recall@10 and speed.

    python -m jobs.bench_ann --config configs/bench_ann.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

from rayapp._internal.jobs import run_job
from rayapp.retrieve.bench import BenchANNConfig


def _run(cfg: BenchANNConfig, _path) -> None:
    from rayapp.eval import write_report
    from rayapp.retrieve.bench import bench_ann

    r = bench_ann(cfg)
    rows = [[name, round(v["recall@10"], 4), round(v["qps"], 1), round(v.get("speedup_vs_flat", 1.0), 1),
             round(v.get("build_s", 0.0), 1)] for name, v in r["results"].items()]
    write_report(cfg.results_dir, "bench_ann", {**r, "config": cfg.model_dump(mode="json")},
                 ["index", "recall@10", "queries/s", "speedup", "build s"], rows,
                 notes=f"{cfg.n:,} x {cfg.dim} unit vectors (mixture of {cfg.centers} Gaussians), {cfg.queries} "
                       f"queries, {cfg.threads} threads, batch search.")
    print((Path(cfg.results_dir) / "bench_ann.md").read_text())


def main(argv=None) -> int:
    return run_job("rayapp bench-ann", BenchANNConfig, "configs/bench_ann.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
