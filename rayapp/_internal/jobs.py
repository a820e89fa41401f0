"""What every job entry point shares: ``--config FILE``, clear errors, exit codes.

Exit codes: 0 done, 2 bad input (config, model, corpus), 1 anything else (with the traceback, since
that is a bug, not a user error).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar

from pydantic import BaseModel

from rayapp.config import ConfigError, load_config

M = TypeVar("M", bound=BaseModel)


def _user_errors() -> tuple[type[BaseException], ...]:
    from rayapp.data import EmptyCorpusError, SourceError
    from rayapp.extract.data import ExtractDataError
    from rayapp.index.delta import DeltaError
    from rayapp.recommend.data import InteractionDataError
    from rayapp.select.data import MultiLabelDataError
    from rayapp.models import ModelNotFoundError
    from rayapp.train.embedder import TrainingDataError
    from rayapp.train.soup import SoupError

    return (ConfigError, ModelNotFoundError, EmptyCorpusError, SourceError, TrainingDataError, SoupError, ExtractDataError,
            InteractionDataError, MultiLabelDataError, DeltaError)


def run_job(name: str, model: type[M], default_config: str, run: Callable[..., Any],
            argv: Optional[Sequence[str]] = None, description: str = "") -> int:
    parser = argparse.ArgumentParser(prog=name, description=description)
    parser.add_argument("--config", default=default_config, help=f"YAML config (default {default_config})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        path = Path(args.config)
        cfg = load_config(model, path)
        run(cfg, path)  # the path lets a job resolve files named relative to its config
    except _user_errors() as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    return 0
