"""Train SASRec / DuoRec (stage 1) and RaSeRec (stage 2) on Ray Train; report full-ranking test metrics.

    python -m jobs.train_rec --config configs/train_rec.yaml
Writes <output_dir>/{stage1.pt, stage2.pt, items.json, histories.json, manifest.json}, the folder
that the Serve app's recommender (recommender.model_dir) loads.
"""

from __future__ import annotations

import sys

from rayapp._internal.jobs import run_job
from rayapp.recommend.config import TrainRecConfig


def _run(cfg: TrainRecConfig, _path) -> None:
    from rayapp._internal.ray_utils import init_ray
    from rayapp.recommend.train import train_rec

    init_ray(cfg.ray)
    out = train_rec(cfg)
    print(f"{out['users']} users, {out['items']} items, {out['interactions']} interactions")
    for name in ("stage1_test", "stage2_test"):
        if name in out:
            print(name, {k: round(v, 4) for k, v in out[name].items()})


def main(argv=None) -> int:
    return run_job("rayapp train-rec", TrainRecConfig, "configs/train_rec.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
