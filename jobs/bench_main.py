"""Benchmark: the main job's stages, cold (fresh artifacts) vs warm (reused), in one run.

    python -m jobs.bench_main --config configs/bench_main.yaml
Writes results/bench_main/bench_main.json and .md and prints the cold/warm ratio per stage.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from rayapp._internal.jobs import run_job
from rayapp.config import BenchMainConfig, DemoConfig, load_config


def _run(cfg: BenchMainConfig, config_path: Path) -> None:
    from rayapp.demo import run_bench_main

    demo_path = cfg.demo_config if cfg.demo_config.is_absolute() else config_path.parent / cfg.demo_config
    demo = load_config(DemoConfig, demo_path)
    home = cfg.home or Path(tempfile.mkdtemp(prefix="rayapp-bench-")) / "home"
    run_bench_main(demo, cfg.results_dir, home)


def main(argv=None) -> int:
    return run_job("rayapp bench-main", BenchMainConfig, "configs/bench_main.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
