"""Benchmark: labelling a corpus from few labels (SGMFS) vs ML-kNN on the labelled documents.

    python -m jobs.bench_label --config configs/bench_label.yaml
PubMedQA PQA-L abstracts with their MeSH terms as labels; a share of abstracts keeps its labels,
the rest are labelled and scored. Writes JSON and a Markdown table.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rayapp._internal.jobs import run_job
from rayapp.select.bench import BenchLabelConfig


def _run(cfg: BenchLabelConfig, _path) -> None:
    from rayapp.eval import write_report
    from rayapp.select.bench import bench_label

    r = bench_label(cfg)
    cols = ("average_precision", "macro_f1", "micro_f1", "ranking_loss")
    rows = [[s["ratio"], s["method"]] + [f"{s[c]['mean']:.4f} ± {s[c]['std']:.4f}" for c in cols]
            + [round(s["seconds"]["mean"], 1)] for s in r["summary"]]
    write_report(cfg.results_dir, "bench_label", {**r, "config": cfg.model_dump(mode="json")},
                 ["labelled", "method", "AP", "macro-F1", "micro-F1", "ranking loss", "s"], rows,
                 notes=f"{r['documents']} abstracts, {len(r['labels'])} MeSH labels (cardinality "
                       f"{r['label_cardinality']:.2f}), {r['features']} TF-IDF features; mean ± std over "
                       f"{len(cfg.seeds)} seeds; scored on the documents that were not labelled.")
    print((Path(cfg.results_dir) / "bench_label.md").read_text())


def main(argv=None) -> int:
    return run_job("rayapp bench-label", BenchLabelConfig, "configs/bench_label.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
