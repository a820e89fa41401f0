"""The closed loop: corpus -> pairs -> embedder -> index -> reranker -> L2G -> reindex -> extractor ->
deploy, as one resumable pipeline.

Each step has a *key*: the hash of its own config block and the versions its inputs came from
(the corpus version is itself a hash of every source file's bytes). The state file
``<home>/pipelines/<name>/state.json`` (written atomically after every step) records each step's
key, outputs and time. A step whose key matches the recorded one, and whose outputs still exist,
is skipped; anything else runs. So a second run with nothing changed only re-reads the sources,
and a run killed in the middle resumes at the step it was in (trainers also resume from their
own checkpoints, since a step's output folder is ``<name>/<step>/<key>``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Optional

from rayapp._internal.artifacts import read_manifest, write_json_atomic
from rayapp._internal.hashing import stable_hash
from rayapp.pipeline.config import PipelineConfig

log = logging.getLogger(__name__)

__all__ = ["PipelineConfig", "run_pipeline", "read_state", "extraction_rows", "STEPS", "InjectedFailure"]

STEPS = ("corpus", "pairs", "embedder", "index", "reranker", "l2g", "reindex", "extractor", "deploy")


class InjectedFailure(RuntimeError):
    """Raised by ``fail_after`` (tests): the run stops as a crash would, after that step's state."""


def read_state(home: Path, name: str = "default") -> dict[str, Any]:
    """The pipeline's state file (``{"steps": {step: {key, outputs, seconds, finished_at}}, "runs": [...]}``)."""
    p = Path(home) / "pipelines" / name / "state.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {"steps": {}, "runs": []}


def extraction_rows(rows: list[dict[str, Any]], limit: Optional[int] = None, negatives: int = 2) -> list[dict[str, Any]]:
    """Extraction rows from the corpus's title -> body pairs, for training an extractor without a
    labelled QA set: question "What does <title> do?", passages = the positive and ``negatives``
    mined negatives, answer = the positive's first sentence (the document's own summary)."""
    import re

    out = []
    for r in rows:
        if r.get("task") != "title-body" or not r.get("pos"):
            continue
        pos = r["pos"][0]
        first = re.split(r"(?<=[.!?])\s", pos.strip(), maxsplit=1)[0].strip()
        if len(first.split()) < 3:
            continue
        passages = [pos, *r.get("negs", [])[:negatives]]
        out.append({"id": str(len(out)), "question": f"What does {r['query']} do?", "passages": passages,
                    "answers": [first], "reference": first})
        if limit is not None and len(out) >= limit:
            break
    return out


class _Run:
    """One run: the state file, the report rows, the skip-or-run rule."""

    def __init__(self, cfg: PipelineConfig):
        self.cfg = cfg
        self.root = (Path(cfg.home) / "pipelines" / cfg.name).resolve()
        self.state_path = self.root / "state.json"
        self.state = read_state(cfg.home, cfg.name)
        self.rows: list[dict[str, Any]] = []

    def _save(self) -> None:
        write_json_atomic(self.state_path, self.state)

    def step(self, name: str, inputs: Any, fn: Callable[[Path], dict[str, Any]],
             still_valid: Callable[[dict[str, Any]], bool] = lambda out: True) -> dict[str, Any]:
        key = stable_hash(name, inputs)
        rec = self.state["steps"].get(name)
        if rec is not None and rec["key"] == key and _outputs_exist(rec["outputs"]) and still_valid(rec["outputs"]):
            self.rows.append({"step": name, "status": "skipped", "seconds": 0.0, "key": key, "outputs": rec["outputs"]})
            log.info("step %s: skipped (inputs unchanged, key %s)", name, key)
            return rec["outputs"]
        t0 = time.perf_counter()
        log.info("step %s: running (key %s)", name, key)
        out = fn(self.root / name / key)
        seconds = round(time.perf_counter() - t0, 3)
        self.state["steps"][name] = {"key": key, "outputs": out, "seconds": seconds, "finished_at": time.time()}
        self._save()
        self.rows.append({"step": name, "status": "ran", "seconds": seconds, "key": key, "outputs": out})
        if self.cfg.fail_after == name:
            raise InjectedFailure(f"fail_after: stopping after step {name!r}")
        return out


def _outputs_exist(outputs: dict[str, Any]) -> bool:
    return all(Path(v).exists() for k, v in outputs.items() if k == "path" or k.endswith("_path"))


def _app_config(cfg: PipelineConfig, config_dir: Optional[Path]):
    from rayapp.config import AppConfig, load_config

    if cfg.deploy.app_config is None:
        return cfg.deploy.app
    p = cfg.deploy.app_config
    if not p.is_absolute() and config_dir is not None:
        p = config_dir / p
    return load_config(AppConfig, p)


def _deployed_app(app, reranker: Optional[str], extractor: Optional[str], extractor_cfg):
    """The AppConfig with the run's reranker and extractor in place."""
    update: dict[str, Any] = {}
    if reranker is not None:
        update["rerank"] = app.rerank.model_copy(update={"model": reranker})
        if app.retriever.kind == "funnel" and app.retriever.funnel.post_ranker == "cross":
            update["retriever"] = app.retriever.model_copy(
                update={"funnel": app.retriever.funnel.model_copy(update={"reranker": reranker})})
    if extractor is not None:
        update["extractor"] = app.extractor.model_copy(update={
            "method": "lm", "model": extractor, "scaffold": extractor_cfg.scaffold,
            "max_reason_tokens": extractor_cfg.max_reason_tokens, "max_tokens": extractor_cfg.max_extract_tokens})
    return app.model_copy(update=update)


def run_pipeline(cfg: PipelineConfig, config_dir: Optional[Path] = None) -> dict[str, Any]:
    """Run (or resume) the pipeline; returns the report, also written to ``results_dir/pipeline.{json,md}``."""
    import ray

    from rayapp._internal.ray_utils import init_ray
    from rayapp.config import EmbedConfig
    from rayapp.data import build_corpus
    from rayapp.index import build_index
    from rayapp.models import resolve_embedder

    resolve_embedder(cfg.embed.model)  # a missing base model fails before any work
    app_cfg = _app_config(cfg, config_dir) if cfg.deploy.enabled else None
    started = init_ray(cfg.ray)
    run = _Run(cfg)
    t_run = time.perf_counter()
    run.state["runs"].append({"started_at": time.time(), "finished": False})
    ray_cfg = cfg.ray.model_dump()
    try:
        # corpus: its version is the hash of the sources, so the build itself is the check
        t0 = time.perf_counter()
        corpus = build_corpus(cfg.corpus, cfg.home)
        seconds, outputs = round(time.perf_counter() - t0, 3), {"path": str(corpus.path), "version": corpus.version}
        run.state["steps"]["corpus"] = {"key": corpus.version, "outputs": outputs, "seconds": seconds,
                                        "finished_at": time.time()}
        run._save()
        run.rows.append({"step": "corpus", "status": "skipped" if corpus.cached else "ran", "seconds": seconds,
                         "key": corpus.version, "outputs": {**outputs, **corpus.manifest["counts"]}})
        if cfg.fail_after == "corpus":
            raise InjectedFailure("fail_after: stopping after step 'corpus'")

        pairs = None
        if cfg.pairs is not None:
            def _pairs(d: Path) -> dict[str, Any]:
                from rayapp.data.pairs import BuildPairsConfig, run_build_pairs

                rep = run_build_pairs(BuildPairsConfig(
                    source="corpus", home=cfg.home, corpus=cfg.corpus, weak_tasks=cfg.pairs.weak_tasks,
                    output_dir=d, embed=cfg.embed, pairs=cfg.pairs.pairs, ray=cfg.ray))
                return {"path": rep["rows_file"], "rows": rep["kept"], "dropped": rep["dropped"]}

            pairs = run.step("pairs", [corpus.version, cfg.pairs.model_dump(mode="json"),
                                       cfg.embed.model_dump(mode="json")], _pairs)

        embedder_path = resolve_embedder(cfg.embed.model)
        if cfg.embedder is not None:
            _needs(pairs, "embedder")

            def _embedder(d: Path) -> dict[str, Any]:
                from rayapp.train.config import TrainEmbedderConfig
                from rayapp.train.embedder import train_embedder
                from rayapp.train.soup import model_soup

                e = cfg.embedder
                tcfg = TrainEmbedderConfig.model_validate({
                    **e.model_dump(mode="json", exclude={"soup", "soup_weights", "output_dir", "ray", "stages"}),
                    "stages": [{**s.model_dump(mode="json"), "data": pairs["path"]} for s in e.stages],
                    "output_dir": str(d), "ray": ray_cfg})
                summaries = train_embedder(tcfg)
                paths = [s["path"] for s in summaries]
                final = paths[-1]
                if e.soup and len(paths) > 1:
                    final = str(model_soup(paths, d / "soup", e.soup_weights))
                return {"path": final, "stages": paths, "soup": e.soup and len(paths) > 1}

            embedder_path = run.step("embedder", [pairs, cfg.embedder.model_dump(mode="json")], _embedder)["path"]

        def _index_step(name: str, model: str) -> dict[str, Any]:
            embed = EmbedConfig.model_validate({**cfg.embed.model_dump(mode="json"), "model": model})

            def _build(_d: Path) -> dict[str, Any]:
                info = build_index(corpus, embed, cfg.index, cfg.home)
                return {"path": str(info.path), "version": info.version, "embedder": model,
                        "passages": info.manifest["counts"]["passages"]}

            return run.step(name, [corpus.version, embed.model_dump(mode="json"), cfg.index.model_dump(mode="json")],
                            _build)

        index = _index_step("index", embedder_path)

        reranker_path = None
        if cfg.reranker is not None:
            _needs(pairs, "reranker")

            def _reranker(d: Path) -> dict[str, Any]:
                from rayapp.train.config import TrainRerankerConfig
                from rayapp.train.reranker import train_reranker

                rcfg = TrainRerankerConfig.model_validate({
                    **cfg.reranker.model_dump(mode="json", exclude={"data", "output_dir", "ray"}),
                    "data": pairs["path"], "output_dir": str(d), "ray": ray_cfg})
                return {"path": train_reranker(rcfg)["path"]}

            reranker_path = run.step("reranker", [pairs, cfg.reranker.model_dump(mode="json")], _reranker)["path"]

        if cfg.l2g is not None:
            _needs(pairs, "l2g")

            def _l2g(d: Path) -> dict[str, Any]:
                from rayapp.config import FunnelConfig
                from rayapp.retrieve.l2g import L2GConfig, run_l2g

                funnel = cfg.l2g.funnel or FunnelConfig(post_ranker="cross", reranker=reranker_path)
                lcfg = L2GConfig.model_validate({
                    **cfg.l2g.model_dump(mode="json", exclude={"index", "queries", "funnel", "output_dir", "ray"}),
                    "index": index["path"], "queries": pairs["path"], "funnel": funnel.model_dump(mode="json"),
                    "output_dir": str(d), "ray": ray_cfg})
                out = run_l2g(lcfg)
                return {"path": out["stage"]["path"], "rows": out["rows"], "kl_before": out["kl_before"],
                        "kl_after": out["kl_after"]}

            l2g = run.step("l2g", [index["version"], reranker_path, pairs, cfg.l2g.model_dump(mode="json")], _l2g)
            index = _index_step("reindex", l2g["path"])

        extractor_path = None
        if cfg.extractor is not None:
            data_digest = None
            if cfg.extractor.data is None:
                _needs(pairs, "extractor")
            else:
                from rayapp._internal.hashing import file_digest
                from rayapp.extract.data import ExtractDataError

                if not cfg.extractor.data.is_file():
                    raise ExtractDataError(f"extractor.data: {cfg.extractor.data} not found")
                data_digest = file_digest(cfg.extractor.data)

            def _extractor(d: Path) -> dict[str, Any]:
                from rayapp._internal.jsonl import read_jsonl_rows
                from rayapp.extract.data import ExtractDataError, write_extract_rows
                from rayapp.train.config import TrainLearConfig, TrainSeerConfig

                data = cfg.extractor.data
                if data is None:
                    rows, _ = read_jsonl_rows(Path(pairs["path"]), lambda r, n: r)
                    ex = extraction_rows(rows, limit=getattr(cfg.extractor, "limit", None))
                    if not ex:
                        raise ExtractDataError(f"{pairs['path']}: no title-body pair to make extraction rows from")
                    data = write_extract_rows(ex, d / "extract_rows.jsonl")
                body = {**cfg.extractor.model_dump(mode="json", exclude={"method", "data", "output_dir", "ray"}),
                        "data": str(data), "output_dir": str(d), "ray": ray_cfg}
                if cfg.extractor.method == "seer":
                    from rayapp.train.seer import train_seer

                    out = train_seer(TrainSeerConfig.model_validate(body))
                else:
                    from rayapp.train.grpo import train_lear

                    out = train_lear(TrainLearConfig.model_validate(body))
                return {"path": out["path"], "method": cfg.extractor.method}

            extractor_path = run.step("extractor", [pairs, data_digest, cfg.extractor.model_dump(mode="json")],
                                      _extractor)["path"]

        if app_cfg is not None:
            app = _deployed_app(app_cfg, reranker_path, extractor_path, cfg.extractor)
            persistent = cfg.deploy.keep_serving

            def _deploy(_d: Path) -> dict[str, Any]:
                from rayapp.serve import APP_NAME, deploy_app

                out = deploy_app(app, index["path"], timeout_s=cfg.deploy.timeout_s)
                import httpx

                r = httpx.post(f"{out['url']}/v1/query", json={"question": cfg.deploy.question}, timeout=cfg.deploy.timeout_s)
                if r.status_code != 200:
                    raise RuntimeError(f"deploy: the new app answered {r.status_code} to {cfg.deploy.question!r}: {r.text[:300]}")
                body = r.json()
                if not persistent:
                    from ray import serve

                    serve.delete(APP_NAME)
                return {"url": out["url"], "index_version": index["version"], "swapped": out["swapped"],
                        "answer": body["answer"][:200], "cited": [c["id"] for c in body.get("citations", [])],
                        "persistent": persistent}

            def _still_deployed(out: dict[str, Any]) -> bool:
                from rayapp.serve import served_index_version

                return not persistent or served_index_version() == out["index_version"]

            run.step("deploy", [index["version"], reranker_path, extractor_path, app.model_dump(mode="json")],
                     _deploy, _still_deployed)
        run.state["runs"][-1].update(finished=True, seconds=round(time.perf_counter() - t_run, 3),
                                     ran=[r["step"] for r in run.rows if r["status"] == "ran"])
        run._save()
    finally:
        if started:
            ray.shutdown()
    report = {"name": cfg.name, "state": str(run.state_path), "seconds": round(time.perf_counter() - t_run, 3),
              "steps": run.rows, "index": index}
    _write_report(cfg, report)
    return report


def _needs(pairs: Optional[dict[str, Any]], step: str) -> None:
    from rayapp.config import ConfigError

    if pairs is None:
        raise ConfigError(f"{step}: trains on the pairs step's rows, but pairs is null")


def _write_report(cfg: PipelineConfig, report: dict[str, Any]) -> None:
    from rayapp.eval import write_markdown_table

    out = Path(cfg.results_dir)
    write_json_atomic(out / "pipeline.json", report)

    def detail(o: dict[str, Any]) -> str:
        keys = ("version", "rows", "passages", "kl_after", "index_version", "swapped")
        return ", ".join(f"{k} {o[k]}" for k in keys if k in o)

    write_markdown_table(out / "pipeline.md", f"Pipeline {cfg.name!r}: {report['seconds']} s",
                         ["step", "status", "seconds", "key", "detail"],
                         [[r["step"], r["status"], r["seconds"], r["key"], detail(r["outputs"])] for r in report["steps"]])
