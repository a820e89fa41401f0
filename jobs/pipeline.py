"""``rayapp pipeline``: the closed loop, corpus -> pairs -> embedder -> index -> reranker -> L2G ->
reindex -> extractor -> deploy, each step skipped when its inputs are unchanged.

    rayapp pipeline --config configs/pipeline.yaml
    ray job submit --working-dir . -- python -m jobs.pipeline --config configs/pipeline.yaml
Prints one line per step (ran / skipped, seconds) and writes ``results_dir/pipeline.{json,md}``;
the state (resumable after a crash) is ``<home>/pipelines/<name>/state.json``.
"""

from __future__ import annotations

import sys

from rayapp._internal.jobs import run_job
from rayapp.pipeline import PipelineConfig


def _run(cfg: PipelineConfig, path) -> None:
    from rayapp.pipeline import run_pipeline

    report = run_pipeline(cfg, config_dir=path.parent)
    for r in report["steps"]:
        print(f"{r['step']:10s} {r['status']:8s} {r['seconds']:9.2f} s  {r['key']}")
    print(f"pipeline {cfg.name!r}: {report['seconds']:.2f} s; index {report['index']['path']}; "
          f"state {report['state']}")


def main(argv=None) -> int:
    return run_job("rayapp pipeline", PipelineConfig, "configs/pipeline.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
