"""FunnelRAG local-to-global distillation: train the funnel's pre-ranker toward the post-ranker.

    python -m jobs.train_l2g --config configs/train_l2g.yaml
Runs the funnel over the queries, rolls the cross-encoder's passage scores up to documents
(alpha * max + (1 - alpha) * mean), and trains the index's embedder on Ray Train with a KL loss to
them. Prints the KL before and after; build an index with the new embedder to use it.
"""

from __future__ import annotations

import sys

from rayapp._internal.jobs import run_job
from rayapp.retrieve.l2g import L2GConfig


def _run(cfg: L2GConfig, _path) -> None:
    from rayapp._internal.ray_utils import init_ray
    from rayapp.retrieve.l2g import run_l2g

    init_ray(cfg.ray)
    out = run_l2g(cfg)
    print(f"L2G: {out['rows']} queries ({out['skipped']} skipped), KL to the rolled-up post-ranker "
          f"{out['kl_before']:.4f} -> {out['kl_after']:.4f}; pre-ranker -> {out['stage']['path']}")


def main(argv=None) -> int:
    return run_job("rayapp train-l2g", L2GConfig, "configs/train_l2g.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
