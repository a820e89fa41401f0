"""Build embedder training rows (KaLM-Embedding V1): pairs -> filtered rows with mined hard negatives.

    python -m jobs.build_pairs --config configs/build_pairs.yaml
Writes <output_dir>/rows.jsonl ({query, pos, negs, task, domain, instruction} per line) and report.json.
"""

from __future__ import annotations

import sys

from rayapp._internal.jobs import run_job
from rayapp.data.pairs import BuildPairsConfig


def _run(cfg: BuildPairsConfig, _config_path) -> None:
    from rayapp.data import SourceError
    from rayapp.data.pairs import run_build_pairs

    try:
        report = run_build_pairs(cfg)
    except FileNotFoundError as e:  # a missing data folder is a user error (exit 2), not a bug
        raise SourceError(str(e)) from e
    print(f"{report['source']}: {report['pairs_in']} pairs -> {report['kept']} rows kept, "
          f"{report['dropped']} dropped by ranking consistency (top {report['settings']['filter_topk']})")
    for task, n in report["dropped_by_task"].items():
        print(f"  {task}: kept {report['kept_by_task'][task]}, dropped {n}")
    neg = report["negatives"]
    print(f"negatives: {neg['from_window']} from ranks [{report['settings']['rank_lo']}, "
          f"{report['settings']['rank_hi']}), {neg['from_random']} random fill")
    print("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in report["seconds"].items()))
    print(f"Rows: {report['rows_file']}")


def main(argv=None) -> int:
    return run_job("rayapp build-pairs", BuildPairsConfig, "configs/build_pairs.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
