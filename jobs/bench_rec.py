"""Benchmark: SASRec vs DuoRec vs RaSeRec on Amazon Beauty in one run (full ranking HR@k / NDCG@k).

    python -m jobs.bench_rec --config configs/bench_rec.yaml
Needs ../shared/data (or the data path in the config). Writes JSON and a Markdown table.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rayapp._internal.jobs import run_job
from rayapp.recommend.bench import BenchRecConfig


def _run(cfg: BenchRecConfig, _path) -> None:
    from rayapp._internal.ray_utils import init_ray
    from rayapp.eval import write_report
    from rayapp.recommend.bench import bench_rec

    init_ray(cfg.ray)
    r = bench_rec(cfg)
    cols = ["hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20"]
    rows = [[name] + [round(m[c], 4) for c in cols]
            + [m["epochs"], *(None if m[k] is None else round(m[k], 1) for k in ("epoch_s", "train_s", "fit_s"))]
            for name, m in r["models"].items()]
    lat = r["recommend_latency_ms"]
    write_report(cfg.results_dir, "bench_rec", {**r, "config": cfg.model_dump(mode="json")},
                 ["model"] + [c.upper() for c in cols]
                 + ["epochs", "s / epoch (last)", "train s (all epochs)", "fit s (this run)"], rows,
                 notes=f"{r['data']['users']} users, {r['data']['items']} items; RaSeRec / DuoRec NDCG@10 = "
                       f"{r['raserec_vs_duorec_ndcg@10']:.3f}; recommendation latency p50 {lat['p50']:.1f} ms, "
                       f"p95 {lat['p95']:.1f} ms (in process).")
    print((Path(cfg.results_dir) / "bench_rec.md").read_text())


def main(argv=None) -> int:
    return run_job("rayapp bench-rec", BenchRecConfig, "configs/bench_rec.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
