"""Train a LEAR evidence extractor with GRPO on Ray Train + DeepSpeed (rollout actors, weight sync).

    python -m jobs.train_lear --config configs/train_lear.yaml
Rows come from python -m jobs.build_extract_data; the policy is written to <output_dir>/final
(ExtractorConfig method: lm), per-step metrics to <output_dir>/metrics.jsonl.
"""

from __future__ import annotations

import sys

from rayapp._internal.jobs import run_job
from rayapp.train.config import TrainLearConfig


def _run(cfg: TrainLearConfig, _path) -> None:
    from rayapp._internal.ray_utils import init_ray
    from rayapp.train.grpo import train_lear

    init_ray(cfg.ray)
    out = train_lear(cfg)
    m = out.get("metrics", {})
    print(f"LEAR extractor {'reused' if out['reused'] else 'trained'} -> {out['path']}"
          + (f" (step {m.get('step')}, mean reward {m.get('mean_reward', float('nan')):.3f}, {out['seconds']} s)"
             if m else ""))


def main(argv=None) -> int:
    return run_job("rayapp train-lear", TrainLearConfig, "configs/train_lear.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
