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
    from rayapp._internal.artifacts import write_json_atomic
    from rayapp._internal.ray_utils import init_ray
    from rayapp.index import LoadedIndex
    from rayapp.models import load_sentence_transformer
    from rayapp.retrieve.funnel import FunnelRetriever
    from rayapp.retrieve.l2g import l2g_kl, l2g_rows, read_queries, train_l2g
    from rayapp.train.embedder import TrainingDataError

    init_ray(cfg.ray)
    ix = LoadedIndex(cfg.index)
    emb = ix.manifest["embedder"]
    st = load_sentence_transformer(emb["path"], emb["max_seq_length"])
    funnel = FunnelRetriever(ix, cfg.funnel, lambda q: st.encode(q, normalize_embeddings=True))
    queries = read_queries(cfg.queries)[: cfg.max_queries]
    rows, skipped = l2g_rows(funnel, queries, cfg.candidate_docs, cfg.funnel.alpha, cfg.instruction)
    if len(rows) < cfg.batch_size:
        raise TrainingDataError(f"{cfg.queries}: only {len(rows)} queries kept {cfg.candidate_docs} candidate "
                                f"documents ({skipped} skipped); need at least batch_size={cfg.batch_size}")
    before = l2g_kl(emb["path"], rows, cfg.tau, max_doc_tokens=cfg.max_doc_tokens)
    summary = train_l2g(rows, emb["path"], cfg.output_dir, cfg.steps, cfg.batch_size, cfg.lr, cfg.tau, cfg.workers,
                        cfg.cpus_per_worker, cfg.torch_threads, cfg.max_doc_tokens)
    after = l2g_kl(summary["path"], rows, cfg.tau, max_doc_tokens=cfg.max_doc_tokens)
    write_json_atomic(cfg.output_dir / "summary.json", {"rows": len(rows), "skipped": skipped, "kl_before": before,
                                                        "kl_after": after, "stage": summary})
    print(f"L2G: {len(rows)} queries ({skipped} skipped), KL to the rolled-up post-ranker {before:.4f} -> "
          f"{after:.4f}; pre-ranker -> {summary['path']}")


def main(argv=None) -> int:
    return run_job("rayapp train-l2g", L2GConfig, "configs/train_l2g.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
