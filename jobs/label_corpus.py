"""Tag a corpus's documents with task/domain labels from a few labelled ones (SGMFS).

    python -m jobs.label_corpus --config configs/label_corpus.yaml
Writes doc_labels.jsonl (labels, domain, scores per document), quarantine.jsonl (bad seed lines)
and report.json. Feed doc_labels.jsonl to build-pairs (``doc_labels:``) and train with
``batch_by: domain`` for label-homogeneous embedder batches.
"""

from __future__ import annotations

import json
import sys

from rayapp._internal.jobs import run_job
from rayapp.select.label import LabelCorpusConfig


def _run(cfg: LabelCorpusConfig, _path) -> None:
    from rayapp.select.label import label_corpus

    if cfg.features == "embedding":
        from rayapp._internal.ray_utils import init_ray

        init_ray(cfg.ray)
    r = label_corpus(cfg)
    print(json.dumps({k: r[k] for k in ("documents", "seeded", "quarantined", "documents_per_label", "fit_rows",
                                        "propagated_rows")}, indent=1))
    print("top selected features:", ", ".join(r["selected_features"][:20]))


def main(argv=None) -> int:
    return run_job("rayapp label-corpus", LabelCorpusConfig, "configs/label_corpus.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
