"""Build extraction rows (question, passages, answers, reference) from PubMedQA PQA-L.

    python -m jobs.build_extract_data --config configs/build_extract_data.yaml
Needs ../shared/data (or $RAYAPP_DATA_DIR); writes one JSONL per split (train, held-out test).
"""

from __future__ import annotations

import sys

from rayapp._internal.jobs import run_job
from rayapp.extract.bench import BuildExtractDataConfig


def _run(cfg: BuildExtractDataConfig, _path) -> None:
    from rayapp.extract.bench import build_extract_data

    for split, info in build_extract_data(cfg).items():
        print(f"{split}: {info['rows']} rows -> {info['path']} (mean {info['mean_passage_words']:.0f} passage words)")


def main(argv=None) -> int:
    return run_job("rayapp build-extract-data", BuildExtractDataConfig, "configs/build_extract_data.yaml", _run, argv,
                   __doc__)


if __name__ == "__main__":
    sys.exit(main())
