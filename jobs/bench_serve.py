"""Benchmark: the served app under load, with replicas killed, and its per-hop overhead.

    python -m jobs.bench_serve --config configs/bench_serve.yaml          # stdlib corpus
    python -m jobs.bench_serve --config configs/bench_serve_100k.yaml     # ~100k PubMedQA passages

32 concurrent loopback clients for 60 s per endpoint; then one replica of each configured deployment
killed under load (``ray.kill``); then retrieval in process vs through a handle vs over HTTP.
Writes JSON, a Markdown table and a PNG of each kill phase to ``results_dir``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rayapp._internal.jobs import run_job
from rayapp.serve.bench import BenchServeConfig


def _run(cfg: BenchServeConfig, _path) -> None:
    from rayapp._internal.ray_utils import init_ray
    from rayapp.eval import write_report
    from rayapp.serve.bench import bench_serve, plot_kills

    init_ray(cfg.ray)
    r = bench_serve(cfg)
    out = Path(cfg.results_dir)
    if r["kills"]:
        plot_kills(r["kills"], out / "bench_serve_kills.png")
    rows = [[f"load /v1/{ep}", s["requests"], s["rps"], s["p50_ms"], s["p90_ms"], s["p99_ms"], s["failed"],
             s["failed_share"], "", ""] for ep, s in r["load"].items()]
    rows += [[f"kill {k['deployment']} (/v1/{k['endpoint']})", k["requests"], k["rps"], k["p50_ms"], k["p90_ms"],
              k["p99_ms"], k["failed"], k["failed_share"], k["failure_window_s"], k["replacement_s"]]
             for k in r["kills"]]
    h = r["hops"]
    notes = f"{r['passages']} passages; {r['clients']} clients, {r['duration_s']:.0f} s per load phase. "
    if "retrieve" in r["load"]:
        notes += f"Retrieve p99 {r['load']['retrieve']['p99_ms']} ms (goal < 200 ms at 100k passages). "
    notes += (f"Retrieval p50: in process {h['in_process']['p50_ms']} ms, through a handle "
              f"{h['handle_1_hop']['p50_ms']} ms, over HTTP {h['http_2_hops']['p50_ms']} ms; overhead beyond the "
              f"retriever's own time: {h['per_hop_ms_handle']} ms for the handle hop, {h['per_hop_ms_http']} ms per "
              "hop over HTTP (goal < 3 ms per hop). Kill phases: "
              "failure window = kill to the last failed request; replaced = kill to Serve running the "
              "full replica count again (goals: <= 1% failed, < 10 s). Plot: bench_serve_kills.png.")
    if "recommend" in r["load"]:
        notes += (f" /v1/recommend: {cfg.recommend_users} users of {cfg.app.recommender.model_dir}, top "
                  f"{cfg.recommend_top_k}.")
    for ep, s in r["load"].items():
        cpu = s["cpu"]
        roles = ", ".join(f"{role} {ms}" for role, ms in cpu["ms_per_request"].items())
        notes += (f" CPU ms per answered /v1/{ep} request: {cpu['total_ms_per_request']} in all "
                  f"({cpu['cores_busy']} cores busy): {roles}.")
    write_report(out, "bench_serve", {**r, "config": cfg.model_dump(mode="json")},
                 ["phase", "requests", "ok/s", "p50 ms", "p90 ms", "p99 ms", "failed", "failed share",
                  "failure window s", "replaced s"], rows, notes=notes)
    print((out / "bench_serve.md").read_text())


def main(argv=None) -> int:
    return run_job("rayapp bench-serve", BenchServeConfig, "configs/bench_serve.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
