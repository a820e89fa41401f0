"""Train rayapp's cross-encoder reranker (MiniLM + a one-logit head) on Ray Train.

    python -m jobs.train_reranker --config configs/train_reranker.yaml
Rows are the training-data job's {query, pos, negs} (python -m jobs.build_pairs); the result is a
Hugging Face sequence-classification folder at <output_dir>/<name> (FunnelConfig.reranker).
"""

from __future__ import annotations

import sys

from rayapp._internal.jobs import run_job
from rayapp.train.config import TrainRerankerConfig


def _run(cfg: TrainRerankerConfig, _path) -> None:
    from rayapp._internal.ray_utils import init_ray
    from rayapp.train.reranker import train_reranker

    init_ray(cfg.ray)
    out = train_reranker(cfg)
    m = out.get("metrics", {})
    print(f"reranker {'reused' if out['reused'] else 'trained'} -> {out['path']}"
          + (f" (steps {m.get('step')}, loss {m.get('loss', float('nan')):.4f}, {out['seconds']} s)" if m else ""))


def main(argv=None) -> int:
    return run_job("rayapp train-reranker", TrainRerankerConfig, "configs/train_reranker.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
