"""The corpus job: sources -> documents, passages, clusters (parquet) + manifest; optionally the index.

    python -m jobs.build_corpus --config configs/build_corpus.yaml
Prints the counts (quarantined rows by reason included) and the version folder.
"""

from __future__ import annotations

import collections
import json
import sys

from rayapp._internal.jobs import run_job
from rayapp.config import BuildCorpusConfig


def _run(cfg: BuildCorpusConfig, _path) -> None:
    from rayapp._internal.ray_utils import init_ray
    from rayapp.data import build_corpus
    from rayapp.index import build_index

    init_ray(cfg.ray)
    info = build_corpus(cfg.corpus, cfg.home)
    print(f"corpus {info.version} ({'reused' if info.cached else 'built'}): {info.path}")
    print(json.dumps(info.manifest["counts"], indent=2))
    reasons = collections.Counter()
    for line in (info.path / "quarantine.jsonl").read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        reasons[f"{q['stage']}: {q['error'].split(':')[0].split(' of ')[0]}"] += 1
    for reason, n in reasons.most_common():
        print(f"  quarantined {n:6d}  {reason}")
    if cfg.embed is not None:
        index = build_index(info, cfg.embed, cfg.index, cfg.home)
        print(f"index {index.version} ({'reused' if index.cached else 'built'}): {index.path}")


def main(argv=None) -> int:
    return run_job("rayapp build-corpus", BuildCorpusConfig, "configs/build_corpus.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
