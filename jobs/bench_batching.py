"""Benchmark: chat completion throughput of one Generator replica, 1 vs 8 concurrent requests.

    python -m jobs.bench_batching --config configs/bench_batching.yaml
Concurrent requests share forward passes through ``@serve.batch``. Writes JSON and a Markdown table.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rayapp._internal.jobs import run_job
from rayapp.generate.bench import BenchBatchingConfig


def _run(cfg: BenchBatchingConfig, _path) -> None:
    from rayapp._internal.ray_utils import init_ray
    from rayapp.eval import write_report
    from rayapp.generate.bench import bench_batching

    init_ray(cfg.ray)
    r = bench_batching(cfg)
    rows = [[conc, round(v["tokens_per_s"], 2), round(v["requests_per_s"], 3), round(v["mean_batch_size"], 2),
             round(v["seconds"], 1), round(v["throughput_vs_first"], 2)] for conc, v in r["concurrency"].items()]
    write_report(cfg.results_dir, "bench_batching", {**r, "config": cfg.model_dump(mode="json")},
                 ["concurrent requests", "completion tokens/s", "requests/s", "mean batch", "seconds",
                  "throughput ratio"], rows,
                 notes=f"{r['requests']} requests of {r['max_tokens']} greedy tokens to one Generator replica "
                       f"({cfg.generator.model}), max_batch_size {cfg.generator.max_batch_size}.")
    print((Path(cfg.results_dir) / "bench_batching.md").read_text())


def main(argv=None) -> int:
    return run_job("rayapp bench-batching", BenchBatchingConfig, "configs/bench_batching.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
