"""Benchmark: a short LEAR GRPO run; mean reward, format reward and compression per step.

    python -m jobs.bench_lear --config configs/bench_lear.yaml
Writes JSON, a Markdown table and PNG curves; says whether each curve rose (last vs first third).
"""

from __future__ import annotations

import sys
from pathlib import Path

from rayapp._internal.jobs import run_job
from rayapp.extract.bench import BenchLearConfig


def _run(cfg: BenchLearConfig, _path) -> None:
    from rayapp._internal.ray_utils import init_ray
    from rayapp.eval import write_report
    from rayapp.extract.bench import bench_lear

    init_ray(cfg.ray)
    r = bench_lear(cfg)
    rows = [[k, round(v["first_third"], 3), round(v["last_third"], 3), round(v["last_third"] / v["first_third"], 3)
             if v["first_third"] else None, "yes" if v["rose"] else "no"] for k, v in r["trend"].items()]
    ph = r["phase_seconds_mean"]
    cold = r["cold_start"]
    cold_note = (f" Cold start first: {len(cold['steps'])} supervised format steps, loss {cold['first_loss']:.3f} -> "
                 f"{cold['last_loss']:.3f} in {cold['seconds']:.0f} s." if cold and cold["steps"] else "")
    write_report(cfg.results_dir, "bench_lear", {**r, "config": cfg.model_dump(mode="json")},
                 ["metric", "first third of steps", "last third", "ratio", "rose"], rows,
                 notes=f"{len(r['steps'])} GRPO steps of {cfg.train.questions_per_step} questions x "
                       f"{cfg.train.group_size} samples, model {cfg.train.model}, {cfg.train.workers} workers; "
                       f"mean s/step: sync {ph['sync_s']:.1f}, rollout {ph['rollout_s']:.1f}, reward "
                       f"{ph['reward_s']:.1f}, update {ph['update_s']:.1f}.{cold_note} Curves: bench_lear.png.")
    print((Path(cfg.results_dir) / "bench_lear.md").read_text())


def main(argv=None) -> int:
    return run_job("rayapp bench-lear", BenchLearConfig, "configs/bench_lear.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
