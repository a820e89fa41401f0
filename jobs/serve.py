"""``rayapp serve``: build or reuse the corpus and index, deploy the whole Serve app, serve until Ctrl-C.

    rayapp serve --config configs/demo.yaml          # the app section: configs/serve.yaml
    serve run configs/serve_app.yaml                 # the same app from a Serve config YAML

The URL and the index folder are printed and written to ``<results_dir>/serve.json``.
"""

from __future__ import annotations

import sys

from rayapp._internal.jobs import run_job
from rayapp.config import DemoConfig


def _run(cfg: DemoConfig, _config_path) -> None:
    from rayapp.demo import serve_forever

    serve_forever(cfg, on_ready=lambda info: print(f"Serving {info['url']} (index {info['index_path']}); "
                                                   "Ctrl-C stops", flush=True))


def main(argv=None) -> int:
    return run_job("rayapp serve", DemoConfig, "configs/demo.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
