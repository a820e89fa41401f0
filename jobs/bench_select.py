"""Benchmark: SGMFS vs feature-selection baselines, ML-kNN scored, over labelled ratios and seeds.

    python -m jobs.bench_select --config configs/bench_select.yaml
One Ray task per (data set, ratio, seed, selector). Writes JSON, a Markdown table (best feature count
per metric, mean +- std over seeds), a seed-by-seed comparison with each cell's best baseline
(bench_select_paired.md) and PNG plots of average precision and macro-F1 vs features.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rayapp._internal.jobs import run_job
from rayapp.select.bench import BenchSelectConfig


def _run(cfg: BenchSelectConfig, _path) -> None:
    from rayapp._internal.ray_utils import init_ray
    from rayapp.eval import write_markdown_table, write_report
    from rayapp.select.bench import bench_select, plot_curves

    init_ray(cfg.ray)
    r = bench_select(cfg)
    for metric in ("average_precision", "macro_f1"):
        plot_curves(r["summary"], Path(cfg.results_dir) / f"bench_select_{metric}.png", metric)
    rows = [[s["dataset"], s["ratio"], s["method"],
             f"{s['average_precision']['mean']:.4f} ± {s['average_precision']['std']:.4f}", s["average_precision"]["m"],
             f"{s['macro_f1']['mean']:.4f} ± {s['macro_f1']['std']:.4f}", s["macro_f1"]["m"], round(s["select_s"], 2)]
            for s in sorted(r["summary"], key=lambda s: (s["dataset"], s["ratio"], s["method"]))]
    met = "; ".join(f"{label}: " + ", ".join(f"{k} {m} {'met' if g[m]['met'] else 'not met'}" for k, g in cells.items()
                                            for m in g) for label, cells in r["goal"].items())
    budget = ", ".join(f"{label} in {sum(b == label for g in cells.values() for b in g.values())} of "
                       f"{sum(len(g) for g in cells.values())}" for label, cells in r["small_budget_best"].items())
    write_report(cfg.results_dir, "bench_select", {**r, "config": cfg.model_dump(mode="json")},
                 ["data", "labelled", "method", "AP (best m)", "m", "macro-F1 (best m)", "m", "select s"], rows,
                 notes=f"{r['tasks']} Ray tasks in {r['wall_s']:.0f} s; mean ± std over {len(cfg.seeds)} seeds; "
                       f"ML-kNN k={cfg.mlknn_k} trained on the labelled rows. Goal (above every baseline): {met}. "
                       f"Best mean over feature counts <= d/2, against the baselines: {budget} (data set, ratio, "
                       f"metric) cells. Plots: bench_select_*.png.")
    paired = []
    for label, cells in r["goal"].items():
        for cell, metrics in cells.items():
            for metric, g in metrics.items():
                best = g["paired"][g["best_baseline"]]
                paired.append([label, cell, metric, g["best_baseline"], f"{g['ours']:.4f}", f"{g['best_baseline_value']:.4f}",
                               f"{best['mean_diff']:+.4f}", f"{best['wins']} / {best['losses']}", round(best["p_sign"], 3),
                               sum(p["wins"] > p["losses"] for p in g["paired"].values()), len(g["paired"])])
    write_markdown_table(Path(cfg.results_dir) / "bench_select_paired.md", "bench_select: SGMFS vs baselines, seed by seed",
                         ["method", "cell", "metric", "best baseline", "method's value", "baseline", "mean diff",
                          "seeds won / lost", "sign-test p", "baselines beaten in more seeds", "baselines"], paired,
                         notes="Each selector at its own best feature count; the same splits per seed. Sign test: "
                               "exact, two-sided, over the untied seeds.")
    for name in ("bench_select.md", "bench_select_paired.md"):
        print((Path(cfg.results_dir) / name).read_text())


def main(argv=None) -> int:
    return run_job("rayapp bench-select", BenchSelectConfig, "configs/bench_select.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
