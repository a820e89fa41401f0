"""Benchmark: Ray Data embedding (length-sorted batches, actor pool) vs SentenceTransformer.encode.

    python -m jobs.bench_embed --config configs/bench_embed.yaml
Same MiniLM, same texts (standard-library passages), same machine; vectors must agree (cos >= 0.999).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from rayapp._internal.jobs import run_job
from rayapp.data.bench import BenchEmbedConfig


def _run(cfg: BenchEmbedConfig, _path) -> None:
    from rayapp._internal.ray_utils import init_ray
    from rayapp.config import CorpusConfig, RayConfig
    from rayapp.data import build_corpus, load_passages
    from rayapp.data.bench import bench_embedding
    from rayapp.eval import write_report

    init_ray(RayConfig(num_cpus=cfg.num_cpus))
    corpus = build_corpus(CorpusConfig(modules=cfg.modules), Path(tempfile.mkdtemp(prefix="rayapp-bench-")))
    texts = load_passages(corpus.path, ["passage_id", "text"]).column("text").to_pylist()[: cfg.n_texts]
    r = bench_embedding(cfg, texts)
    rows = [["SentenceTransformer.encode", r["sentence_transformers_s"], r["sentence_transformers_texts_per_s"], 1.0],
            [f"rayapp Ray Data actor pool ({r['backend']} backend)", r["ray_data_s"], r["ray_data_texts_per_s"], r["speedup"]]]
    if "ray_data_torch_s" in r:
        rows.insert(1, ["rayapp Ray Data actor pool (torch backend)", r["ray_data_torch_s"],
                        round(r["n_texts"] / r["ray_data_torch_s"], 2), r["ray_data_torch_speedup"]])
    write_report(cfg.results_dir, "bench_embed", {**r, "config": cfg.model_dump(mode="json")},
                 ["path", "seconds", "texts/s", "ratio"], rows,
                 notes=f"{r['n_texts']} passages, MiniLM; min cosine between the two paths {r['min_cosine']:.6f}.")
    print((Path(cfg.results_dir) / "bench_embed.md").read_text())
    print(f"speedup Ray Data / SentenceTransformer.encode: {r['speedup']}x (goal >= 1.2); min cosine {r['min_cosine']:.6f}")


def main(argv=None) -> int:
    return run_job("rayapp bench-embed", BenchEmbedConfig, "configs/bench_embed.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
