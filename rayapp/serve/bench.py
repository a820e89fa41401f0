"""Load, fault and per-hop figures of the served app (``jobs/bench_serve.py``).

- **Load**: ``clients`` concurrent HTTP clients on loopback for ``duration_s`` against each endpoint
  (``/v1/retrieve``, ``/v1/query``, ``/v1/recommend`` for ``recommend_users`` users of the served
  recommender, and the stage endpoints ``/v1/embeddings`` (each question), ``/v1/extract`` and
  ``/v1/rerank`` (each question with the passages the app retrieves for it, fetched once before
  any clock starts)): requests/s, p50/p90/p99 latency, failed requests.
- **Faults**: under the same load, ``ray.kill`` one replica of a deployment (the actor Serve runs it
  in) and measure the failed-request share of the phase, the failure window (kill to the last
  failed request) and the replacement time (kill to Serve running the full replica count again).
- **Hops**: the same retrieval called in this process, through a deployment handle (one hop) and
  over HTTP (proxy -> Ingress -> Retriever, two hops); a call's overhead is its latency minus the
  retriever's own reported time, per hop = overhead / hops (medians).
- **CPU per request**: during each load phase, the CPU seconds of every process on this machine
  (Serve's proxy, each deployment's replicas, the controller, Ray's own daemons, this driver and its
  clients), divided by the requests answered: where the cores go.

Each figure is measured against its in-run baseline; nothing is compared with numbers from
another run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field, model_validator

from rayapp.config import (DEPLOYMENTS, AppConfig, CorpusConfig, EmbedConfig, IndexConfig, RayConfig, StrictModel,
                           default_home)

__all__ = ["BenchServeConfig", "KillPhase", "bench_serve", "run_load", "stage_bodies", "recommend_users", "kill_replica",
           "cpu_snapshot", "cpu_per_request", "process_role"]

Endpoint = Literal["retrieve", "query", "recommend", "embeddings", "extract", "rerank"]

DEFAULT_QUESTIONS = [
    "How do I serialize a Python object to a JSON string?",
    "How can I read the rows of a CSV file as dictionaries?",
    "How do I run a command in a subprocess and capture its output?",
    "How do I create a temporary directory that is removed automatically?",
    "How do I parse command line arguments?",
    "How do I copy a directory tree?",
    "How do I format a date as a string?",
    "How do I compile a regular expression?",
]


class KillPhase(StrictModel):
    deployment: Literal[DEPLOYMENTS]  # type: ignore[valid-type]
    endpoint: Endpoint = "retrieve"


def _default_app() -> AppConfig:
    two = {"num_replicas": 2, "num_cpus": 0.1, "health_check_period_s": 1.0}
    return AppConfig.model_validate({
        "generator": {"max_new_tokens": 16},
        "deployments": {"Ingress": two, "Retriever": two, "Generator": two, "Embedder": {"num_cpus": 0.1}},
        "max_ongoing_requests": 64,
    })


class BenchServeConfig(StrictModel):
    ray: RayConfig = Field(default_factory=RayConfig)
    home: Path = Field(default_factory=default_home)
    corpus: CorpusConfig = Field(default_factory=lambda: CorpusConfig(modules=[
        "json", "csv", "subprocess", "argparse", "pathlib", "shutil", "tempfile", "logging", "datetime", "re"]))
    #: instead of ``corpus``: PubMedQA's abstracts plus this many generated distractors (needs
    #: ``data_dir`` or ``../shared/data``); 24,500 gives about 100k passages
    pubmedqa_distractors: Optional[int] = Field(default=None, ge=0)
    data_dir: Optional[Path] = None
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    app: AppConfig = Field(default_factory=_default_app)
    questions: list[str] = Field(default_factory=lambda: list(DEFAULT_QUESTIONS), min_length=1)
    clients: int = Field(default=32, ge=1)
    duration_s: float = Field(default=60.0, gt=0)
    endpoints: list[Endpoint] = Field(default_factory=lambda: ["retrieve", "query"])
    query_max_new_tokens: int = Field(default=16, ge=1)
    hop_samples: int = Field(default=200, ge=10)
    kills: list[KillPhase] = Field(default_factory=lambda: [
        KillPhase(deployment="Retriever"), KillPhase(deployment="Ingress"),
        KillPhase(deployment="Generator", endpoint="query")])
    kill_phase_s: float = Field(default=30.0, gt=0)
    kill_at_s: float = Field(default=5.0, ge=0)
    #: ``/v1/recommend`` load: this many users of the recommender's histories, seeded sample
    recommend_users: int = Field(default=256, ge=1)
    recommend_top_k: int = Field(default=10, ge=1)
    results_dir: Path = Path("results/bench_serve")

    @model_validator(mode="after")
    def _endpoints_are_served(self) -> "BenchServeConfig":
        used = set(self.endpoints) | {k.endpoint for k in self.kills}
        app = self.app
        needs = {"recommend": (app.recommender.model_dir is not None, "app.recommender.model_dir (a train-rec output folder)"),
                 "extract": (app.extractor.method != "none", "app.extractor.method (not 'none')"),
                 "rerank": (app.rerank.model is not None or app.retriever.kind == "funnel",
                            "app.rerank.model (a train-reranker folder) or a funnel retriever"),
                 "embeddings": (app.embeddings.enabled, "app.embeddings.enabled: true")}
        for ep, (ok, what) in needs.items():
            if ep in used and not ok:
                raise ValueError(f"endpoint '{ep}' needs {what}")
        return self


# ------------------------------------------------------------------------------------------ load
def _body(endpoint: Endpoint, item: str | dict[str, Any], max_new_tokens: int, top_k: int) -> dict[str, Any]:
    if isinstance(item, dict):
        return item
    if endpoint == "recommend":
        return {"user": item, "top_k": top_k}
    return {"question": item} if endpoint == "retrieve" else {"question": item, "max_new_tokens": max_new_tokens}


def stage_bodies(url: str, endpoint: Endpoint, questions: list[str]) -> list[dict[str, Any]]:
    """Request bodies for the stage endpoints, asked of the running app once: ``embeddings`` names
    the served embedder (``/v1/info``); ``extract`` and ``rerank`` carry the passages that
    ``/v1/retrieve`` returns for each question, as the RAG path would pass them on."""
    import httpx

    if endpoint == "embeddings":
        model = httpx.get(f"{url}/v1/info", timeout=60).raise_for_status().json()["embedder"]
        return [{"model": model, "input": q} for q in questions]
    out = []
    for q in questions:
        hits = httpx.post(f"{url}/v1/retrieve", json={"question": q}, timeout=60).raise_for_status().json()["hits"]
        out.append({"question": q, "passages": [{"id": h["id"], "text": h["text"]} for h in hits]}
                   if endpoint == "extract" else {"query": q, "documents": [h["text"] for h in hits]})
    return out


def recommend_users(model_dir: Path, n: int, seed: int = 0) -> list[str]:
    """A seeded sample of ``n`` user ids from a recommender folder's ``histories.json``."""
    import json

    users = sorted(json.loads((Path(model_dir) / "histories.json").read_text(encoding="utf-8")))
    if not users:
        raise ValueError(f"{model_dir}/histories.json: no users to recommend for")
    pick = np.random.default_rng(seed).choice(len(users), size=min(n, len(users)), replace=False)
    return [users[int(i)] for i in pick]


async def _load(url: str, endpoint: Endpoint, inputs: list[str | dict[str, Any]], clients: int, duration_s: float,
                max_new_tokens: int, timeout_s: float, top_k: int) -> list[tuple[float, float, Any]]:
    import httpx

    records: list[tuple[float, float, Any]] = []  # (start, seconds, status code or exception name)
    t_end = time.perf_counter() + duration_s
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        async def worker(i: int) -> None:
            k = i
            while time.perf_counter() < t_end:
                body = _body(endpoint, inputs[k % len(inputs)], max_new_tokens, top_k)
                k += clients
                t0 = time.perf_counter()
                try:
                    code: Any = (await client.post(f"{url}/v1/{endpoint}", json=body)).status_code
                except httpx.HTTPError as e:
                    code = type(e).__name__
                records.append((t0, time.perf_counter() - t0, code))

        await asyncio.gather(*(worker(i) for i in range(clients)))
    return records


def run_load(url: str, endpoint: Endpoint, inputs: list[str | dict[str, Any]], clients: int, duration_s: float,
             max_new_tokens: int = 16, timeout_s: float = 600.0, top_k: int = 10) -> list[tuple[float, float, Any]]:
    """``clients`` concurrent clients posting to ``/v1/<endpoint>`` for ``duration_s``, cycling
    through ``inputs`` (questions; user ids for ``recommend``; or whole request bodies, as
    :func:`stage_bodies` makes them); one ``(start, seconds, status)``
    record per request (status: the HTTP code, or the name of the client error, e.g.
    ``ReadTimeout`` past ``timeout_s``)."""
    return asyncio.run(_load(url, endpoint, inputs, clients, duration_s, max_new_tokens, timeout_s, top_k))


def _inputs(cfg: BenchServeConfig, endpoint: Endpoint, url: str) -> list[str | dict[str, Any]]:
    if endpoint == "recommend":
        return recommend_users(cfg.app.recommender.model_dir, cfg.recommend_users)
    if endpoint in ("embeddings", "extract", "rerank"):
        return stage_bodies(url, endpoint, cfg.questions)
    return cfg.questions


def process_role(cmdline: list[str]) -> str:
    """What a process is, from its command line: a Ray worker by its process title
    (``ray::ServeReplica:<app>:<deployment>`` -> the deployment, ``ray::ServeController.listen_for_change``
    -> ``ServeController``, ``ray::ProxyActor`` -> ``ProxyActor``), a Python program by its script,
    anything else by its executable's name."""
    title = cmdline[0] if cmdline else "?"
    if title.startswith("ray::"):
        return title[5:].split()[0].rsplit(":", 1)[-1].split(".")[0]
    return next((Path(c).name for c in cmdline if c.endswith(".py")), Path(title).name)


def cpu_snapshot() -> dict[int, tuple[str, float]]:
    """``pid -> (role, CPU seconds so far)`` for every process on this machine; the role is
    :func:`process_role`, ``driver`` for this process."""
    import os

    import psutil

    me, out = os.getpid(), {}
    for p in psutil.process_iter(["cmdline", "name"]):
        try:
            t = p.cpu_times()
            cmd = p.info["cmdline"] or [p.info["name"] or "?"]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        out[p.pid] = ("driver" if p.pid == me else process_role(cmd), t.user + t.system)
    return out


def cpu_per_request(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                    wall_s: float, ok: int) -> dict[str, Any]:
    """CPU milliseconds per answered request by role, between two :func:`cpu_snapshot`s (processes
    alive at both), busiest first; ``cores_busy``: all roles' CPU over the wall time."""
    by_role: dict[str, float] = {}
    for pid, (role, t1) in after.items():
        if pid in before and before[pid][0] == role:
            by_role[role] = by_role.get(role, 0.0) + t1 - before[pid][1]
    total = sum(by_role.values())
    per = {r: round(1e3 * s / max(ok, 1), 2) for r, s in sorted(by_role.items(), key=lambda kv: -kv[1]) if s > 0.005 * total}
    return {"ms_per_request": per, "total_ms_per_request": round(1e3 * total / max(ok, 1), 2),
            "cores_busy": round(total / wall_s, 2)}


def _summary(records: list[tuple[float, float, Any]], wall_s: float) -> dict[str, Any]:
    ok = np.array([s for _, s, c in records if c == 200])
    failed = [c for _, _, c in records if c != 200]
    codes: dict[str, int] = {}
    for c in failed:
        codes[str(c)] = codes.get(str(c), 0) + 1
    pct = (lambda q: round(float(np.percentile(ok, q)) * 1e3, 1) if len(ok) else None)
    return {"requests": len(records), "ok": int(len(ok)), "failed": len(failed),
            "failed_share": round(len(failed) / max(len(records), 1), 5), "failures": codes,
            "rps": round(len(ok) / wall_s, 2), "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99)}


# ------------------------------------------------------------------------------------------ faults
def _replicas(app: str, deployment: str) -> list[dict[str, Any]]:
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()["applications"][app]["deployments"][deployment]
    return details["replicas"]


def kill_replica(app: str, deployment: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """``ray.kill`` one running replica of ``deployment``; returns when Serve runs the same number
    of replicas again (none of them the killed one): ``{"replica", "replacement_s", "t_kill"}``."""
    import ray

    running = [r for r in _replicas(app, deployment) if r["state"] == "RUNNING"]
    if not running:
        raise RuntimeError(f"{deployment}: no running replica to kill")
    victim = running[0]
    ray.kill(ray.get_actor(victim["actor_name"], namespace="serve"), no_restart=True)
    t_kill = time.perf_counter()
    while time.perf_counter() - t_kill < timeout_s:
        now = [r for r in _replicas(app, deployment)
               if r["state"] == "RUNNING" and r["replica_id"] != victim["replica_id"]]
        if len(now) >= len(running):
            return {"replica": victim["replica_id"], "replacement_s": round(time.perf_counter() - t_kill, 2),
                    "t_kill": t_kill}
        time.sleep(0.1)
    return {"replica": victim["replica_id"], "replacement_s": None, "t_kill": t_kill}


def _kill_phase(cfg: BenchServeConfig, url: str, phase: KillPhase, inputs: list[str]) -> dict[str, Any]:
    from rayapp.serve import APP_NAME

    out: dict[str, Any] = {}

    def killer() -> None:
        time.sleep(cfg.kill_at_s)
        out.update(kill_replica(APP_NAME, phase.deployment))

    thread = threading.Thread(target=killer, daemon=True)
    t0 = time.perf_counter()
    thread.start()
    records = run_load(url, phase.endpoint, inputs, cfg.clients, cfg.kill_phase_s, cfg.query_max_new_tokens,
                       top_k=cfg.recommend_top_k)
    wall = time.perf_counter() - t0
    thread.join(timeout=180)
    t_kill = out.get("t_kill", t0)
    failed_after = [s + d for s, d, c in records if c != 200 and s + d >= t_kill]
    return {"deployment": phase.deployment, "endpoint": phase.endpoint, **_summary(records, wall),
            "replacement_s": out.get("replacement_s"),
            "failure_window_s": round(max(failed_after) - t_kill, 2) if failed_after else 0.0,
            "kill_at_s": round(t_kill - t0, 2),
            "timeline": _timeline(records, t0)}


def _timeline(records: list[tuple[float, float, Any]], t0: float) -> list[dict[str, Any]]:
    """Per second since ``t0``: requests finished OK and failed."""
    rows: dict[int, list[int]] = {}
    for s, d, c in records:
        sec = int(s + d - t0)
        rows.setdefault(sec, [0, 0])[0 if c == 200 else 1] += 1
    return [{"second": k, "ok": v[0], "failed": v[1]} for k, v in sorted(rows.items())]


# ------------------------------------------------------------------------------------------ hops
def _hops(cfg: BenchServeConfig, url: str, index_path: Path) -> dict[str, Any]:
    """Retrieval in this process, through a handle and over HTTP. The hop overhead of each call is
    its latency minus the time the retriever itself reports (its stage timings), so the model's
    speed in this process vs in the replica does not enter; median over ``hop_samples`` calls."""
    import httpx
    from ray import serve

    from rayapp.index import LoadedIndex
    from rayapp.models import load_sentence_transformer
    from rayapp.retrieve import HybridRetriever
    from rayapp.serve import APP_NAME

    index = LoadedIndex(index_path)
    emb = index.manifest["embedder"]
    model = load_sentence_transformer(emb["path"], emb["max_seq_length"])
    local = HybridRetriever(index, cfg.app.retriever, lambda q: model.encode(q, normalize_embeddings=True))
    handle = serve.get_deployment_handle("Retriever", APP_NAME)
    top_k = cfg.app.retriever.top_k
    qs = [cfg.questions[i % len(cfg.questions)] for i in range(cfg.hop_samples)]

    def in_process(q: str) -> float:
        return sum(t.seconds for t in local.retrieve(q, top_k)[1])

    def over_handle(q: str) -> float:
        return sum(t["seconds"] for t in handle.retrieve.remote(q, top_k).result()["timings"])

    def over_http(q: str) -> float:
        r = httpx.post(f"{url}/v1/retrieve", json={"question": q}, timeout=60).raise_for_status()
        return sum(t["seconds"] for t in r.json()["timings"] if t["stage"] != "retrieve_total")

    out: dict[str, Any] = {}
    for name, call, hops in (("in_process", in_process, 0), ("handle_1_hop", over_handle, 1),
                             ("http_2_hops", over_http, 2)):
        for q in qs[:5]:
            call(q)  # warm up
        lat, overhead = [], []
        for q in qs:
            t0 = time.perf_counter()
            work = call(q)
            lat.append(time.perf_counter() - t0)
            overhead.append(lat[-1] - work)
        out[name] = {"p50_ms": round(float(np.median(lat)) * 1e3, 2),
                     "overhead_p50_ms": round(float(np.median(overhead)) * 1e3, 2),
                     "per_hop_ms": round(float(np.median(overhead)) * 1e3 / hops, 2) if hops else None}
    out["per_hop_ms_handle"] = out["handle_1_hop"]["per_hop_ms"]
    out["per_hop_ms_http"] = out["http_2_hops"]["per_hop_ms"]
    return out


# ------------------------------------------------------------------------------------------ the run
def _build_index(cfg: BenchServeConfig) -> tuple[Any, list[str]]:
    from rayapp.config import CorpusConfig
    from rayapp.data import build_corpus
    from rayapp.index import build_index

    corpus_cfg, questions = cfg.corpus, cfg.questions
    if cfg.pubmedqa_distractors is not None:
        from rayapp.data.sets import load_pubmedqa
        from rayapp.retrieve.bench import pubmedqa_with_distractors

        qa = load_pubmedqa(cfg.data_dir, "all")
        src = pubmedqa_with_distractors(cfg.home, qa, cfg.pubmedqa_distractors)
        corpus_cfg = CorpusConfig(kind="jsonl", path=src, dedup={"near": False})
        questions = [q["text"] for q in qa.queries[:64]]
    corpus = build_corpus(corpus_cfg, cfg.home)
    return build_index(corpus, cfg.embed, cfg.index, cfg.home), questions


def bench_serve(cfg: BenchServeConfig) -> dict[str, Any]:
    """Deploy the app over the configured index and measure load, faults and hops (Ray must be
    initialised). The app is deleted at the end."""
    from ray import serve

    from rayapp.serve import APP_NAME, start_app

    t0 = time.perf_counter()
    info, questions = _build_index(cfg)
    cfg = cfg.model_copy(update={"questions": questions})
    build_s = time.perf_counter() - t0
    url = start_app(cfg.app, info.path)
    try:
        # each endpoint's inputs once, before any clock starts (the user sample reads
        # histories.json; the stage endpoints' passages come from the app's own retrieval)
        inputs = {ep: _inputs(cfg, ep, url) for ep in {*cfg.endpoints, *(k.endpoint for k in cfg.kills)}}
        hops = _hops(cfg, url, info.path)
        load = {}
        for ep in cfg.endpoints:
            t1, cpu0 = time.perf_counter(), cpu_snapshot()
            records = run_load(url, ep, inputs[ep], cfg.clients, cfg.duration_s, cfg.query_max_new_tokens,
                               top_k=cfg.recommend_top_k)
            wall = time.perf_counter() - t1
            load[ep] = _summary(records, wall)
            load[ep]["cpu"] = cpu_per_request(cpu0, cpu_snapshot(), wall, load[ep]["ok"])
        kills = [_kill_phase(cfg, url, phase, inputs[phase.endpoint]) for phase in cfg.kills]
    finally:
        serve.delete(APP_NAME)
    return {"passages": info.manifest["counts"]["passages"], "index_build_s": round(build_s, 1),
            "clients": cfg.clients, "duration_s": cfg.duration_s, "load": load, "kills": kills, "hops": hops,
            "goals": {"retrieve_p99_ms_lt": 200, "failed": 0, "kill_failed_share_le": 0.01, "recovery_s_lt": 10,
                      "per_hop_ms_lt": 3}}


def plot_kills(kills: list[dict[str, Any]], path: Path) -> None:
    """Requests finished per second (OK and failed) through each kill phase, the kill marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(kills), 1, figsize=(7, 2.2 * len(kills)), squeeze=False, sharex=True)
    for ax, k in zip(axes[:, 0], kills):
        sec = [r["second"] for r in k["timeline"]]
        ax.plot(sec, [r["ok"] for r in k["timeline"]], label="ok / s", color="#4e79a7")
        ax.bar(sec, [r["failed"] for r in k["timeline"]], label="failed / s", color="#e15759")
        ax.axvline(k["kill_at_s"], color="k", linestyle="--", linewidth=1, label="replica killed")
        rep = f"{k['replacement_s']} s" if k["replacement_s"] is not None else "not replaced"
        ax.set_title(f"kill one {k['deployment']} replica under /v1/{k['endpoint']} load: "
                     f"{k['failed']} failed of {k['requests']}, replaced in {rep}", fontsize=9)
        ax.set_ylabel("requests")
    axes[0, 0].legend(fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel("seconds into the phase")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
