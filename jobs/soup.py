"""Model soup: average the parameters of fine-tuned embedders (uniform or weighted).

    python -m jobs.soup --config configs/soup.yaml
"""

from __future__ import annotations

import sys

from rayapp._internal.jobs import run_job
from rayapp.train.config import SoupConfig


def _run(cfg: SoupConfig, _path) -> None:
    from rayapp.train.soup import model_soup

    out = model_soup(cfg.models, cfg.output, cfg.weights)
    print(f"soup of {len(cfg.models)} models -> {out}")


def main(argv=None) -> int:
    return run_job("rayapp soup", SoupConfig, "configs/soup.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
