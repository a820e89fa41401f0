"""Benchmark: compression ratio and answer EM/F1 of each extractor, one generator, held-out rows.

    python -m jobs.bench_extract --config configs/bench_extract.yaml
Writes JSON and a Markdown table; each extractor is compared with full passages in the same run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rayapp._internal.jobs import run_job
from rayapp.extract.bench import BenchExtractConfig


def _run(cfg: BenchExtractConfig, _path) -> None:
    from rayapp.eval import write_report
    from rayapp.extract.bench import bench_extract

    r = bench_extract(cfg)
    s = r["summary"]
    base = s.get("full")
    rows = []
    for name, m in s.items():
        d_f1 = f"{m['f1'] - base['f1']:+.3f}" if base else "-"
        rows.append([name, round(m["em"], 3), round(m["f1"], 3), d_f1,
                     round(m["compression"], 2) if m["compression"] else None, round(m["evidence_words"], 1),
                     round(m["extract_s"], 3), round(m["answer_s"], 3), m["fallbacks"]])
    write_report(cfg.results_dir, "bench_extract", {**r, "config": cfg.model_dump(mode="json")},
                 ["extractor", "EM", "F1", "F1 vs full", "compression", "evidence words", "extract s/q",
                  "answer s/q", "fallbacks to passages"], rows,
                 notes=f"{r['rows']} held-out rows from {cfg.data}; generator {cfg.generator}, greedy, same prompt "
                       "(only the evidence differs).")
    print((Path(cfg.results_dir) / "bench_extract.md").read_text())


def main(argv=None) -> int:
    return run_job("rayapp bench-extract", BenchExtractConfig, "configs/bench_extract.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
