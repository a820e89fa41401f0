"""The main job: build the corpus and indexes, deploy the Serve app, ask questions over HTTP.

    python -m jobs.demo --config configs/demo.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.demo
"""

from __future__ import annotations

import sys

from rayapp._internal.jobs import run_job
from rayapp.config import DemoConfig


def _run(cfg: DemoConfig, _config_path) -> None:
    from rayapp.demo import format_answer, run_demo

    report = run_demo(cfg)
    for ans in report["answers"]:
        print(format_answer(ans), end="\n\n")
    print("Stages: " + ", ".join(f"{s['stage']} {s['seconds']:.2f} s" + (" (cached)" if s.get("cached") else "")
                                for s in report["stages"]))
    print(f"Results: {report['results']}")


def main(argv=None) -> int:
    return run_job("rayapp demo", DemoConfig, "configs/demo.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
