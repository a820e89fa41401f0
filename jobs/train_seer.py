"""Train a SEER evidence extractor: self-aligned preference pairs, then LPO on Ray Train + DeepSpeed.

    python -m jobs.train_seer --config configs/train_seer.yaml
Rows come from python -m jobs.build_extract_data; pairs go to <output_dir>/pairs.jsonl, the policy
to <output_dir>/final (ExtractorConfig method: lm).
"""

from __future__ import annotations

import sys

from rayapp._internal.jobs import run_job
from rayapp.train.config import TrainSeerConfig


def _run(cfg: TrainSeerConfig, _path) -> None:
    from rayapp._internal.ray_utils import init_ray
    from rayapp.train.seer import train_seer

    init_ray(cfg.ray)
    out = train_seer(cfg)
    if out["reused"]:
        print(f"SEER extractor reused -> {out['path']}")
        return
    m = out["metrics"]
    print(f"SEER extractor trained -> {out['path']}: {out['pairs']['pairs']} pairs from {out['rows']} rows, "
          f"{out['steps']} steps, loss {m.get('loss', float('nan')):.4f}, {out['seconds']} s")


def main(argv=None) -> int:
    return run_job("rayapp train-seer", TrainSeerConfig, "configs/train_seer.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
