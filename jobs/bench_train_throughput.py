"""Benchmark: samples/s of the Ray Train + DeepSpeed embedder loop vs a plain PyTorch loop.

    python -m jobs.bench_train_throughput --config configs/bench_train_throughput.yaml
Same model (MiniLM), per-worker batch, texts and thread budget; 1 and 2 workers.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rayapp._internal.jobs import run_job
from rayapp.train.bench import BenchThroughputConfig


def _run(cfg: BenchThroughputConfig, _path) -> None:
    from rayapp._internal.ray_utils import init_ray
    from rayapp.eval import write_report
    from rayapp.train.bench import bench_throughput

    init_ray(cfg.ray)
    r = bench_throughput(cfg)
    runs = [("`worker_env` (rayapp's default)", r)] + ([("unchanged (glibc and Ray defaults)", r["default_env"])]
                                                     if "default_env" in r else [])
    rows = []
    for env, v in runs:
        rows.append(["plain PyTorch loop (1 process)", env, 1, v["plain_samples_per_s"], 1.0])
        rows += [[f"Ray Train + DeepSpeed ZeRO-{cfg.zero_stage}", env, int(w), x["samples_per_s"], x["ratio_vs_plain"]]
                 for w, x in v["ray"].items()]
    write_report(cfg.results_dir, "bench_train_throughput", {**r, "config": cfg.model_dump(mode="json")},
                 ["loop", "environment", "workers", "samples/s", "ratio vs plain, same environment"], rows,
                 notes=f"MiniLM, {cfg.batch_size} rows per worker per step (1 query + 1 positive + "
                       f"{cfg.hard_negatives} negatives each), {cfg.steps} steps, first step excluded; "
                       f"{cfg.torch_threads} torch threads in total. worker_env: {cfg.worker_env}.")
    print((Path(cfg.results_dir) / "bench_train_throughput.md").read_text())
    for env, v in runs:
        for w, x in v["ray"].items():
            print(f"ratio Ray Train ({w} worker(s), environment {env}) / plain loop: {x['ratio_vs_plain']}x")


def main(argv=None) -> int:
    return run_job("rayapp bench-train-throughput", BenchThroughputConfig, "configs/bench_train_throughput.yaml",
                   _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
