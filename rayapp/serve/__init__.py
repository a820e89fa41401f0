"""Serve stage: one application, stages composed by handles.

``Ingress.bind(Retriever.bind(...), Generator.bind(...), ...)``: each stage is its own deployment with
its own replicas and CPU share. With ``retriever.kind: funnel`` the retriever is
``FunnelRetriever.bind(index, cfg, PostRanker.bind(reranker))``: cluster BM25 and the document
pre-ranker in one deployment, the cross-encoder post-ranker in another. :func:`build_app` makes the application from an
:class:`~rayapp.config.AppConfig`; :func:`app_builder` is the same for ``serve run`` /
``serve build`` (``serve run rayapp.serve:app_builder index_path=... config=configs/serve.yaml``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from ray import serve

from rayapp.config import AppConfig, load_config
from rayapp.serve._deployments import (Extractor, FunnelRetriever, Generator, Ingress, PostRanker, Recommender,
                                      Retriever)

__all__ = ["build_app", "app_builder", "start_app", "APP_NAME"]

APP_NAME = "rayapp"


def build_app(cfg: AppConfig, index_path: str | Path) -> serve.Application:
    opts = {"ray_actor_options": {"num_cpus": cfg.num_cpus_per_replica},
            "max_ongoing_requests": cfg.max_ongoing_requests}
    if cfg.retriever.kind == "funnel":
        f = cfg.retriever.funnel
        post = (serve.deployment(PostRanker).options(name="PostRanker", **opts).bind(
            f.reranker, f.reranker_max_length, f.rerank_batch_size) if f.post_ranker == "cross" else None)
        retriever = serve.deployment(FunnelRetriever).options(name="Retriever", **opts).bind(
            str(index_path), cfg.retriever, post)
    else:
        retriever = serve.deployment(Retriever).options(name="Retriever", **opts).bind(str(index_path), cfg.retriever)
    generator = serve.deployment(Generator).options(name="Generator", **opts).bind(cfg.generator)
    extractor = (serve.deployment(Extractor).options(name="Extractor", **opts).bind(cfg.extractor)
                 if cfg.extractor.method != "none" else None)
    recommender = (serve.deployment(Recommender).options(name="Recommender", **opts).bind(cfg.recommender)
                   if cfg.recommender.model_dir is not None else None)
    return Ingress.options(name="Ingress", **opts).bind(retriever, generator, cfg.limits, cfg.retriever.top_k,
                                                         cfg.generator, extractor, recommender, cfg.recommender,
                                                         cfg.auth)


def app_builder(args: dict[str, Any]) -> serve.Application:
    """Builder for the Serve CLI: ``index_path`` (required) and ``config`` (an AppConfig YAML)."""
    if "index_path" not in args:
        raise ValueError("app_builder: pass index_path=<index folder>")
    cfg = load_config(AppConfig, args["config"]) if "config" in args else AppConfig()
    return build_app(cfg, args["index_path"])


def start_app(cfg: AppConfig, index_path: str | Path, timeout_s: float = 300.0) -> str:
    """Deploy the app on the connected Ray cluster, listening on ``cfg.http``; returns its base URL
    once ``/healthz`` answers."""
    serve.start(http_options={"host": cfg.http.host, "port": cfg.http.port})
    serve.run(build_app(cfg, index_path), name=APP_NAME, route_prefix="/")
    url = f"http://{cfg.http.host}:{cfg.http.port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"Serve app did not answer {url}/healthz within {timeout_s} s")
        time.sleep(0.5)
