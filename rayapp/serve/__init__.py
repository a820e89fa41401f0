"""Serve stage: one application, stages composed by handles.

``Ingress.bind(cfg, Retriever.bind(...), Generator.bind(...), ...)``: each stage is its own deployment
with its own replicas (or autoscaling) and CPU share (``AppConfig.deployments``). With
``retriever.kind: funnel`` the retriever is ``FunnelRetriever.bind(cfg, Reranker.bind(...))``:
cluster BM25 and the document pre-ranker in one deployment, the cross-encoder post-ranker in
another, which also answers ``/v1/rerank``. ``Embedder`` answers ``/v1/embeddings`` with the index's
embedder unless another is configured. :func:`build_app` makes the application from an
:class:`~rayapp.config.AppConfig`; :func:`app_builder` is the same for ``serve run`` /
``serve build`` (``serve run rayapp.serve:app_builder index_path=... config=configs/serve.yaml``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import httpx
from ray import serve

from pydantic import BaseModel

from rayapp._internal.artifacts import read_manifest
from rayapp._internal.hashing import file_digest, stable_hash
from rayapp.config import AppConfig, DeploymentOptions, load_config
from rayapp.serve._deployments import (Embedder, Extractor, FunnelRetriever, Generator, Ingress, Recommender, Reranker,
                                      Retriever)

__all__ = ["build_app", "app_builder", "start_app", "deploy_app", "served_index_version", "APP_NAME"]

APP_NAME = "rayapp"
#: the deployments' code: a new rayapp release (or a local edit) redeploys every stage
_CODE = file_digest(Path(__file__).with_name("_deployments.py"))


def _options(cfg: AppConfig, name: str) -> dict[str, Any]:
    """Serve options of deployment ``name``: the app-wide CPUs and concurrency, overridden by
    ``cfg.deployments[name]`` (replicas or autoscaling); Serve's logs in ``cfg.log_encoding``."""
    d = cfg.deployments.get(name) or DeploymentOptions()
    opts: dict[str, Any] = {
        "name": name,
        "ray_actor_options": {"num_cpus": d.num_cpus or cfg.num_cpus_per_replica},
        "max_ongoing_requests": d.max_ongoing_requests or cfg.max_ongoing_requests,
        "logging_config": {"encoding": cfg.log_encoding},
    }
    if d.num_gpus:
        opts["ray_actor_options"]["num_gpus"] = d.num_gpus
    if d.max_replicas_per_node is not None:
        opts["max_replicas_per_node"] = d.max_replicas_per_node
    if d.health_check_period_s is not None:
        opts["health_check_period_s"] = d.health_check_period_s
    if d.autoscaling is not None:
        opts["autoscaling_config"] = d.autoscaling.model_dump()
    elif d.num_replicas is not None:
        opts["num_replicas"] = d.num_replicas
    return opts


def build_app(cfg: AppConfig, index_path: str | Path, deltas: Sequence[str | Path] = ()) -> serve.Application:
    """The application: Ingress bound to the handles of every configured stage. The index version
    (and its delta indexes) is the Retriever's ``user_config``, so deploying the same app over
    another version is an in-place update of the running replicas (see :func:`deploy_app`)."""
    manifest = read_manifest(Path(index_path))
    if manifest is None:
        raise FileNotFoundError(f"no finished index at {index_path} (manifest.json missing)")
    version = {"index_path": str(Path(index_path).resolve()), "deltas": [str(Path(d).resolve()) for d in deltas]}
    reranker, reranker_name = None, None
    funnel = cfg.retriever.funnel if cfg.retriever.kind == "funnel" else None
    if cfg.rerank.model is not None or (funnel is not None and funnel.post_ranker == "cross"):
        path = cfg.rerank.model or funnel.reranker
        max_length = cfg.rerank.max_length if cfg.rerank.model else funnel.reranker_max_length
        pair_batch = funnel.rerank_batch_size if funnel is not None else 32
        reranker = _bind(Reranker, cfg, "Reranker", path, max_length, pair_batch, cfg.rerank.max_batch_size,
                         cfg.rerank.batch_wait_timeout_s, cfg.rerank.backend)
        reranker_name = cfg.rerank.served_name or Path(str(path)).name
    if funnel is not None:
        post = reranker if funnel.post_ranker == "cross" else None
        retriever = _bind(FunnelRetriever, cfg, "Retriever", cfg.retriever, post, user_config=version)
    else:
        retriever = _bind(Retriever, cfg, "Retriever", cfg.retriever, user_config=version)
    generator = _bind(Generator, cfg, "Generator", cfg.generator)
    extractor = _bind(Extractor, cfg, "Extractor", cfg.extractor) if cfg.extractor.method != "none" else None
    recommender = (_bind(Recommender, cfg, "Recommender", cfg.recommender)
                   if cfg.recommender.model_dir is not None else None)
    embedder, embedder_name = None, None
    if cfg.embeddings.enabled:
        e = cfg.embeddings
        model = e.model or manifest["embedder"]["path"]
        max_seq = e.max_seq_length if e.model else manifest["embedder"]["max_seq_length"]
        embedder = _bind(Embedder, cfg, "Embedder", model, max_seq, e.max_batch_size, e.batch_wait_timeout_s, e.backend)
        embedder_name = e.served_name or (e.model if e.model else manifest["embedder"].get("model")) or Path(model).name
    return _bind(Ingress, cfg, "Ingress", cfg, retriever, generator, extractor, recommender, embedder, reranker,
                 embedder_name, reranker_name)


def _arg_key(a: Any) -> Any:
    if isinstance(a, BaseModel):
        return a.model_dump(mode="json")
    if isinstance(a, serve.Application):  # a bound stage: the ingress holds its handle by name
        return ["handle", a._bound_deployment.name]
    return a if a is None or isinstance(a, (str, int, float, bool)) else repr(a)


def _bind(cls: Any, cfg: AppConfig, name: str, *args: Any, user_config: Optional[dict] = None) -> serve.Application:
    """``cls`` as deployment ``name`` with its options, bound to ``args``, with a stable version.

    ``serve.run`` gives a deployment without a version a random one, so every redeploy would
    replace every replica (a rolling update: models reloaded). The version here is a hash of the
    deployments' code, the options and the arguments, so a redeploy replaces only the deployments
    whose inputs changed, and a new ``user_config`` (the Retriever's index version) is applied in
    place. Serve took the public ``version`` option away; ``_internal=True`` is how its own config
    path sets one. If a later Serve refuses it, every redeploy falls back to a rolling update,
    which is still zero-downtime but slower."""
    opts = _options(cfg, name)
    dep = cls if isinstance(cls, serve.Deployment) else serve.deployment(cls)
    dep = dep.options(**opts, **({"user_config": user_config} if user_config is not None else {}))
    version = stable_hash(_CODE, name, opts, [_arg_key(a) for a in args])
    try:
        dep = dep.options(version=version, _internal=True)
    except (TypeError, ValueError):
        pass
    return dep.bind(*args)


def app_builder(args: dict[str, Any]) -> serve.Application:
    """Builder for the Serve CLI and Serve config YAMLs (``configs/serve_app.yaml``): ``index_path``
    (an index folder, or ``latest``: the newest index under ``home``, default ``$RAYAPP_HOME``) and
    ``config`` (an AppConfig YAML)."""
    from rayapp.config import default_home
    from rayapp.index import latest_index

    unknown = set(args) - {"index_path", "config", "home"}
    if unknown:
        raise ValueError(f"app_builder: unknown argument(s) {sorted(unknown)}; expected index_path, config, home")
    if "index_path" not in args:
        raise ValueError("app_builder: pass index_path=<index folder> (or index_path=latest)")
    raw = args.get("config")
    if isinstance(raw, dict):  # an inline AppConfig mapping
        cfg = AppConfig.model_validate(raw)
    elif raw is not None:
        if not Path(raw).is_file():
            raise ValueError(f"app_builder: config {raw!r} not found (relative paths are read from {os.getcwd()}); "
                             "give an absolute path or an inline mapping")
        cfg = load_config(AppConfig, raw)
    else:
        cfg = AppConfig()
    index_path = args["index_path"]
    if index_path == "latest":
        index_path = latest_index(Path(args.get("home") or default_home()).expanduser())
    return build_app(cfg, index_path)


def start_app(cfg: AppConfig, index_path: str | Path, timeout_s: float = 300.0,
              deltas: Sequence[str | Path] = ()) -> str:
    """Deploy the app on the connected Ray cluster, listening on ``cfg.http``; returns its base URL
    once ``/healthz`` answers."""
    serve.start(http_options={"host": cfg.http.host, "port": cfg.http.port})
    serve.run(build_app(cfg, index_path, deltas), name=APP_NAME, route_prefix="/")
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


def served_index_version(app_name: str = APP_NAME) -> Optional[str]:
    """The index version the running app's Retriever serves, or None when no such app runs."""
    try:
        if app_name not in serve.status().applications:
            return None
        handle = serve.get_deployment_handle("Retriever", app_name)
        return handle.info.remote().result(timeout_s=30)["index_version"]
    except Exception:  # noqa: BLE001 - Serve not started, app deploying or failed: nothing served
        return None


def deploy_app(cfg: AppConfig, index_path: str | Path, deltas: Sequence[str | Path] = (),
               timeout_s: float = 300.0) -> dict[str, Any]:
    """Deploy the app, or roll the running one to ``index_path`` (+ ``deltas``) without downtime.

    With the app already running, ``serve.run`` of the same graph changes only what differs: a new
    index version is a new Retriever ``user_config``, applied in place (each replica loads it beside
    the old one and swaps, see ``_Versioned``); a changed model path (embedder, reranker, extractor)
    replaces those replicas by a rolling update. Returns ``{"url", "swapped", "seconds",
    "index_version"}`` once every deployment runs the new version."""
    t0 = time.perf_counter()
    running = served_index_version() is not None
    if not running:
        url = start_app(cfg, index_path, timeout_s, deltas)
    else:
        serve.run(build_app(cfg, index_path, deltas), name=APP_NAME, route_prefix="/")
        url = f"http://{cfg.http.host}:{cfg.http.port}"
    version = read_manifest(Path(index_path))["version"]
    return {"url": url, "swapped": running, "seconds": round(time.perf_counter() - t0, 3), "index_version": version}
