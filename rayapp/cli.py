"""``rayapp <command>``: one subcommand per job in ``jobs/``, plus ``query`` (an HTTP client)."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

# subcommand -> (jobs module, one-line help)
JOBS = {
    "demo": ("jobs.demo", "main job: corpus -> index -> Serve app -> answers with citations"),
    "pipeline": ("jobs.pipeline", "the closed loop: corpus -> train -> index -> deploy, skipping unchanged steps, resumable"),
    "add-documents": ("jobs.add_documents", "index new documents as a delta and roll the live app to serve them"),
    "serve": ("jobs.serve", "deploy the Serve app over the demo config's index and serve until Ctrl-C"),
    "build-corpus": ("jobs.build_corpus", "corpus job: documents, passages, clusters (+ index)"),
    "build-pairs": ("jobs.build_pairs", "training-data job: {query, pos, negs, task, instruction} rows"),
    "bench": ("jobs.bench_all", "benchmarks: `rayapp bench all [--full|--collect|--only a,b]`, one report"),
    "bench-main": ("jobs.bench_main", "benchmark: the main job's stages, cold vs warm"),
    "bench-embed": ("jobs.bench_embed", "benchmark: Ray Data embedding vs SentenceTransformer.encode"),
    "bench-stream": ("jobs.bench_stream", "benchmark: streaming chunk + dedup of 1M documents"),
    "bench-pairs": ("jobs.bench_pairs", "benchmark: hard-negative mining + filtering on PubMedQA, TREC-QA"),
    "train-embedder": ("jobs.train_embedder", "train an embedder (KaLM recipe) on Ray Train + DeepSpeed"),
    "soup": ("jobs.soup", "model soup: average fine-tuned embedders' parameters"),
    "bench-train-quality": ("jobs.bench_train_quality", "benchmark: recipe variants vs base and ST MNRL on TREC-QA"),
    "bench-train-throughput": ("jobs.bench_train_throughput", "benchmark: Ray Train + DeepSpeed vs plain loop samples/s"),
    "train-reranker": ("jobs.train_reranker", "train the cross-encoder reranker on Ray Train"),
    "train-l2g": ("jobs.train_l2g", "FunnelRAG local-to-global distillation of the pre-ranker"),
    "bench-reranker": ("jobs.bench_reranker", "benchmark: trained reranker vs the bi-encoder (TREC-QA, PubMedQA)"),
    "bench-funnel": ("jobs.bench_funnel", "benchmark: FunnelRAG vs flat retrieval, time and recall"),
    "bench-ann": ("jobs.bench_ann", "benchmark: faiss IVF / HNSW vs flat at 1M x 384"),
    "pica-vectors": ("jobs.pica_vectors", "PICA: compute and store task-level ICL vectors"),
    "bench-pica": ("jobs.bench_pica", "benchmark: PICA vs ICL vs zero-shot, time and agreement"),
    "cluster-manifests": ("jobs.cluster_manifests", "generate and validate the KubeRay manifests and the VM launcher YAML"),
    "bench-serve": ("jobs.bench_serve", "benchmark: the served app under 32 clients, replicas killed, per-hop overhead"),
    "bench-batching": ("jobs.bench_batching", "benchmark: generator throughput at 1 vs 8 concurrent requests"),
    "build-extract-data": ("jobs.build_extract_data", "extraction rows (question, passages, answers) from PubMedQA"),
    "train-lear": ("jobs.train_lear", "train a LEAR evidence extractor (GRPO, rollout actors)"),
    "train-seer": ("jobs.train_seer", "train a SEER evidence extractor (expert-scored pairs, LPO)"),
    "bench-lear": ("jobs.bench_lear", "benchmark: LEAR GRPO reward / format / compression curves"),
    "bench-extract": ("jobs.bench_extract", "benchmark: compression and answer F1 of each extractor"),
    "train-rec": ("jobs.train_rec", "train SASRec / DuoRec / RaSeRec (sequential recommendation) on Ray Train"),
    "bench-rec": ("jobs.bench_rec", "benchmark: SASRec vs DuoRec vs RaSeRec on Amazon Beauty, HR@k / NDCG@k"),
    "bench-select": ("jobs.bench_select", "benchmark: SGMFS vs feature-selection baselines (ML-kNN, Mulan sets)"),
    "bench-label": ("jobs.bench_label", "benchmark: corpus labelling from few labels (SGMFS) vs ML-kNN, PubMedQA MeSH"),
    "label-corpus": ("jobs.label_corpus", "tag corpus documents with labels from a few labelled ones (SGMFS)"),
}


def _query(argv: Sequence[str]) -> int:
    import httpx

    p = argparse.ArgumentParser(prog="rayapp query", description="Ask a running rayapp app a question.")
    p.add_argument("question")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--top-k", type=int)
    a = p.parse_args(argv)
    body = {"question": a.question, **({"top_k": a.top_k} if a.top_k else {})}
    try:
        r = httpx.post(f"{a.url}/v1/query", json=body, timeout=600)
    except httpx.HTTPError as e:
        print(f"rayapp query: error: cannot reach {a.url}: {e}", file=sys.stderr)
        return 2
    if r.status_code != 200:
        print(f"rayapp query: error: HTTP {r.status_code}: {r.text}", file=sys.stderr)
        return 2
    from rayapp.demo import format_answer

    print(format_answer(r.json()))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="rayapp",
        description="Ray-native retrieval-augmented generation. Each job command takes --config FILE.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (_, help_) in JOBS.items():
        sub.add_parser(name, help=help_, add_help=False)
    sub.add_parser("query", help="ask a running app a question over HTTP", add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "query":
        return _query(rest)
    if cmd not in JOBS:
        parser.error(f"unknown command {cmd!r}; choose from {', '.join([*JOBS, 'query'])}")
    if cmd == "bench":
        if rest[:1] == ["all"]:
            rest = rest[1:]
        elif rest[:1] not in (["-h"], ["--help"]):
            print("rayapp bench: error: the one bench command is `rayapp bench all` (see --help); "
                  "single benchmarks are bench-<name>", file=sys.stderr)
            return 2
    module = importlib.import_module(JOBS[cmd][0])
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
