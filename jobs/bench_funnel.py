"""Benchmark: FunnelRAG (cluster BM25 -> bi-encoder -> cross-encoder) vs flat retrieval, one run.

    python -m jobs.bench_funnel --config configs/bench_funnel.yaml
Needs ../shared/data (or $RAYAPP_DATA_DIR) and the trained reranker (jobs.bench_reranker).
Writes JSON, a Markdown table and a PNG of seconds per query vs recall.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rayapp._internal.jobs import run_job
from rayapp.retrieve.bench import BenchFunnelConfig


def _plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, r) in enumerate(res["systems"].items()):
        ax.scatter(r["s_per_query"], 100 * r["recall"], s=40)
        ax.annotate(name, (r["s_per_query"], 100 * r["recall"]), fontsize=8, xytext=(4, 4 if i % 2 else -10),
                    textcoords="offset points")
    ax.set_xlabel("seconds per query (2 CPU cores)")
    ax.set_ylabel("gold-abstract recall in top passages (%)")
    ax.set_title(f"{res['corpus']['passages']:,} passages, {res['queries']} queries")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _run(cfg: BenchFunnelConfig, _path) -> None:
    from rayapp._internal.ray_utils import init_ray
    from rayapp.eval import write_report
    from rayapp.retrieve.bench import bench_funnel

    init_ray(cfg.ray)
    r = bench_funnel(cfg)
    rows = [[name, round(100 * s["recall"], 1), round(s["s_per_query"], 3), round(s["passages_cross_encoded"], 1),
             round(s["speedup_vs_flat_rerank"], 2), round(s["recall_diff_points"], 1),
             f"{s['vs_baseline']['only_this']} / {s['vs_baseline']['only_baseline']}",
             round(s["vs_baseline"]["p_mcnemar"], 3)] for name, s in r["systems"].items()]
    c = r["corpus"]
    write_report(cfg.results_dir, "bench_funnel", {**r, "config": cfg.model_dump(mode="json")},
                 ["system", f"recall@{cfg.top_k} (%)", "s/query", "passages cross-encoded", "speedup", "recall diff (pts)",
                  "hit only here / only by baseline", "McNemar p"],
                 rows, notes=f"{c['documents']:,} documents, {c['passages']:,} passages, {c['clusters']} clusters; "
                             f"{r['queries']} PubMedQA test questions; speedup and recall diff against {r['baseline']}.")
    try:
        _plot(r, Path(cfg.results_dir) / "bench_funnel.png")
    except ImportError:
        print("matplotlib is not installed: no PNG")
    print((Path(cfg.results_dir) / "bench_funnel.md").read_text())
    for name, sys_r in r["systems"].items():
        if "gold_kept" in sys_r:
            g = sys_r["gold_kept"]
            print(f"{name}: gold document kept after clusters {100 * g['clusters']:.1f}%, after documents "
                  f"{100 * g['docs']:.1f}%, in the top {cfg.top_k} passages {100 * g['passages']:.1f}%")
    for d in r["dev_sweep"]:
        print(f"dev ({d['questions']} train questions), {d['cluster_ranker']} clusters {d['clusters']}: gold kept after "
              f"clusters {100 * d['kept_clusters']:.1f}%, after {d['docs']} documents {100 * d['kept_docs']:.1f}%")
    f = r["systems"]["funnel"]
    v = f["vs_baseline"]
    print(f"funnel vs {r['baseline']}: {f['speedup_vs_flat_rerank']:.2f}x faster, recall {f['recall_diff_points']:+.1f} points "
          f"({v['only_this']} questions only the funnel got, {v['only_baseline']} only the baseline; "
          f"exact McNemar p = {v['p_mcnemar']:.3f})")


def main(argv=None) -> int:
    return run_job("rayapp bench-funnel", BenchFunnelConfig, "configs/bench_funnel.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
