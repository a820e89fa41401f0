"""``rayapp bench all``: every benchmark job, one report (Markdown + JSON + PNG).

    rayapp bench all                    # quick settings (configs/quick/), about an hour on 2 cores
    rayapp bench all --full             # the full configs (hours; the figures BENCHMARKS.md discusses)
    rayapp bench all --collect [--full] # no runs: the report from the results already on disk
    rayapp bench all --only funnel,ann  # a subset (order is kept: reranker before funnel, lear before extract)

Writes results/quick/bench_all/ (or results/bench_all/ with --full): bench_all.json, bench_all.md,
bench_all.png and each job's log, and rewrites the quick (or full) summary section of BENCHMARKS.md.
Exits 1 when a benchmark failed (the others still ran), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def main(argv=None) -> int:
    from rayapp.eval.bench_all import BENCHMARKS, REPO, run_benchmarks

    p = argparse.ArgumentParser(prog="rayapp bench all", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="full settings (configs/bench_*.yaml) instead of quick")
    p.add_argument("--collect", action="store_true", help="run nothing: report the results already written")
    p.add_argument("--only", type=_names, default=[], help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    p.add_argument("--skip", type=_names, default=[], help="comma-separated benchmarks to leave out")
    p.add_argument("--results-dir", type=Path, help="where the report goes")
    p.add_argument("--timeout-s", type=float, default=None, help="per job (default 1800 quick, 86400 full)")
    p.add_argument("--benchmarks-md", type=Path, default=REPO / "BENCHMARKS.md",
                   help="the file whose summary section is rewritten (default BENCHMARKS.md)")
    p.add_argument("--no-benchmarks-md", action="store_true", help="leave BENCHMARKS.md alone")
    a = p.parse_args(argv)
    try:
        report = run_benchmarks("full" if a.full else "quick", only=a.only, skip=a.skip, collect=a.collect,
                                results_dir=a.results_dir,
                                timeout_s=a.timeout_s or (86400.0 if a.full else 1800.0),
                                benchmarks_md=None if a.no_benchmarks_md else a.benchmarks_md)
    except ValueError as e:
        print(f"rayapp bench all: error: {e}", file=sys.stderr)
        return 2
    bad = [r["bench"] for r in report["benchmarks"] if r["status"] in ("failed", "timeout")]
    print(f"[bench all] report: {report['results_dir']}/bench_all.md"
          + (f"; failed: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
