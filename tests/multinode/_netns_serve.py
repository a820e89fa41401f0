"""Run as a Ray job on a :class:`NetnsCluster`: deploy the app with its Ingress and Retriever
replicas spread over hosts (one per host), put it under load from the head's namespace, cut the worker host holding one
replica, and print ``RESULT {json}``: requests, failed share, failure window, replacement time.

    ray job submit --address http://<head>:8265 --runtime-env-json '{"working_dir": ...}' -- \
        python -m tests.multinode._netns_serve --cluster '<NetnsCluster.to_json()>' --generator <dir>
"""

from __future__ import annotations

import argparse
import json
import threading
import time

QUESTIONS = ["How do I parse JSON?", "How do I write rows to a CSV file?", "json.dumps indent",
             "csv DictReader fields"]


def main() -> None:
    import ray

    from rayapp.config import AppConfig, CorpusConfig, EmbedConfig, IndexConfig
    from rayapp.data import build_corpus
    from rayapp.index import build_index
    from rayapp.serve import APP_NAME, start_app
    from rayapp.serve.bench import _replicas, run_load
    from tests.multinode._netns import NetnsCluster

    ap = argparse.ArgumentParser()
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--generator", required=True)
    ap.add_argument("--load-s", type=float, default=40.0)
    ap.add_argument("--cut-at-s", type=float, default=8.0)
    args = ap.parse_args()
    cluster = NetnsCluster.from_json(args.cluster)
    ray.init()
    home = cluster.root / "home"
    corpus = build_corpus(CorpusConfig(modules=["json", "csv"]), home)
    index = build_index(corpus, EmbedConfig(batch_size=32), IndexConfig(), home)
    spread = {"num_replicas": 2, "max_replicas_per_node": 1, "num_cpus": 0.1, "health_check_period_s": 1.0}
    cfg = AppConfig.model_validate({
        "generator": {"model": args.generator, "max_new_tokens": 8}, "retriever": {"top_k": 2},
        "embeddings": {"enabled": False}, "http": {"host": cluster.head_ip, "port": 8000},
        "num_cpus_per_replica": 0.1, "deployments": {"Retriever": spread, "Ingress": spread}})
    url = start_app(cfg, index.path)
    node_ips = sorted(r["node_ip"] for r in _replicas(APP_NAME, "Retriever") if r["state"] == "RUNNING")
    assert len(set(node_ips)) == 2, node_ips  # one replica per host
    host = next(i for i, ip in enumerate(cluster.ips) if i > 0 and ip in node_ips)
    records: list = []
    loader = threading.Thread(target=lambda: records.extend(
        run_load(url, "retrieve", QUESTIONS, clients=4, duration_s=args.load_s, timeout_s=20)))
    t_start = time.time()
    loader.start()
    time.sleep(args.cut_at_s)
    t_cut = cluster.cut(host)
    replaced = None
    while time.time() - t_cut < args.load_s + 60:
        running = [r for r in _replicas(APP_NAME, "Retriever")
                   if r["state"] == "RUNNING" and r["node_ip"] != cluster.ips[host]]
        if len(running) >= 2 and replaced is None:
            replaced = round(time.time() - t_cut, 2)
            break
        time.sleep(0.5)
    loader.join()
    # run_load's clock is perf_counter: map it onto wall time through the first request
    t0 = min(s for s, _, _ in records)
    to_wall = lambda s: t_start + (s - t0)  # noqa: E731
    failed_after = [to_wall(s + d) for s, d, c in records if c != 200 and to_wall(s + d) >= t_cut]
    end = max(to_wall(s + d) for s, d, _ in records)
    result = {
        "hosts": len(cluster.hosts), "replica_ips": node_ips, "cut_host": cluster.ips[host],
        "requests": len(records), "failed": sum(c != 200 for _, _, c in records),
        "failed_share": round(sum(c != 200 for _, _, c in records) / len(records), 4),
        "failures": sorted({str(c) for _, _, c in records if c != 200}),
        "ok_after_cut": sum(c == 200 and to_wall(s) > t_cut for s, _, c in records),
        "failure_window_s": round(max(failed_after) - t_cut, 2) if failed_after else 0.0,
        "replacement_s": replaced,
        "failed_in_last_5s": sum(c != 200 for s, d, c in records if to_wall(s + d) > end - 5),
    }
    print("RESULT " + json.dumps(result), flush=True)
    from ray import serve

    serve.delete(APP_NAME)


if __name__ == "__main__":
    main()
