"""Benchmark: chat completion throughput of one Generator replica, 1 vs 8 concurrent requests, and
the generator backends compared in one run (deploy-to-ready seconds, tokens/s, equal answers).

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
    rows = [[name, v["onnx_precision"] or "", round(v["deploy_to_ready_s"], 1), round(v["first_answer_s"], 2), conc,
             round(c["tokens_per_s"], 2), round(c["requests_per_s"], 3), round(c["mean_batch_size"], 2),
             round(c["throughput_vs_first"], 2), round(c["tokens_per_s_vs_first_variant"], 2),
             round(v["same_answers_as_first"], 3)]
            for name, v in r["variants"].items() for conc, c in v["concurrency"].items()]
    first = next(iter(r["variants"]))
    write_report(cfg.results_dir, "bench_batching", {**r, "config": cfg.model_dump(mode="json")},
                 ["generator", "onnx precision", "deploy to ready s", "first answer s", "concurrent requests",
                  "completion tokens/s", "requests/s", "mean batch", "vs 1 concurrent", f"vs {first}",
                  f"answers equal to {first}'s"], rows,
                 notes=f"{r['requests']} requests of {r['max_tokens']} greedy tokens to one Generator replica "
                       f"({cfg.generator.model}), max_batch_size {cfg.generator.max_batch_size}; generators one "
                       "after the other in this run.")
    for name, v in r["variants"].items():
        print(f"{name}: ready in {v['deploy_to_ready_s']:.1f} s ({v['ready_vs_first']:.2f}x {first}); tokens/s "
              + ", ".join(f"{k}: {c['tokens_per_s']:.1f} ({c['tokens_per_s_vs_first_variant']:.2f}x)"
                          for k, c in v["concurrency"].items()))
    print((Path(cfg.results_dir) / "bench_batching.md").read_text())


def main(argv=None) -> int:
    return run_job("rayapp bench-batching", BenchBatchingConfig, "configs/bench_batching.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
