"""The main job's pipeline: corpus -> embeddings -> BM25 + faiss -> Serve app -> questions over HTTP.

Every built artifact is content-addressed under ``cfg.home``: a second run with the same inputs and
config reuses the corpus, the index and the converted generator, and only deploys and asks.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import httpx
import ray
from ray import serve

from rayapp._internal.artifacts import write_json_atomic
from rayapp._internal.ray_utils import init_ray
from rayapp.config import DemoConfig
from rayapp.data import build_corpus
from rayapp.eval import write_markdown_table
from rayapp.index import build_index
from rayapp.models import check_generator, resolve_embedder, resolve_generator
from rayapp.serve import APP_NAME, start_app

log = logging.getLogger(__name__)

__all__ = ["run_demo", "format_answer"]


def _ask(url: str, question: str, timeout_s: float = 600.0) -> dict[str, Any]:
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/v1/query", json={"question": question}, timeout=timeout_s)
    elapsed = time.perf_counter() - t0
    body = r.json()
    if r.status_code != 200:
        raise RuntimeError(f"/v1/query answered {r.status_code} for {question!r}: {body}")
    body["client_seconds"] = round(elapsed, 6)
    return body


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run the whole slice and return the report (also written to ``results_dir/demo.json``)."""
    if not cfg.questions:
        raise ValueError("questions: give at least one question to ask")
    resolve_embedder(cfg.embed.model)  # a missing model fails here, before any work
    check_generator(cfg.app.generator.model)
    started = init_ray(cfg.ray)
    stages: list[dict[str, Any]] = []

    def stage(name: str, t0: float, **extra: Any) -> None:
        stages.append({"stage": name, "seconds": round(time.perf_counter() - t0, 3), **extra})
        log.info("stage %s: %.2f s %s", name, stages[-1]["seconds"], extra)

    try:
        t0 = time.perf_counter()
        corpus = build_corpus(cfg.corpus, cfg.home)
        stage("corpus", t0, cached=corpus.cached, version=corpus.version, **corpus.manifest["counts"])
        t0 = time.perf_counter()
        index = build_index(corpus, cfg.embed, cfg.index, cfg.home)
        stage("embed+index", t0, cached=index.cached, version=index.version, **index.manifest["build_timings"])
        t0 = time.perf_counter()
        resolve_generator(cfg.app.generator.model)
        stage("generator_model", t0, model=cfg.app.generator.model)
        t0 = time.perf_counter()
        url = start_app(cfg.app, index.path)
        stage("deploy", t0, url=url)
        answers = []
        for q in cfg.questions:
            t0 = time.perf_counter()
            answers.append(_ask(url, q))
            stage("query", t0, question=q)
        report = {
            "corpus": {"path": str(corpus.path), **corpus.manifest["counts"], "version": corpus.version},
            "index": {"path": str(index.path), "version": index.version},
            "url": url,
            "stages": stages,
            "answers": answers,
        }
        out = Path(cfg.results_dir)
        write_json_atomic(out / "demo.json", report)
        write_markdown_table(
            out / "demo.md", "Main job stages",
            ["stage", "seconds", "cached / detail"],
            [[s["stage"], s["seconds"], s.get("cached", s.get("question", ""))] for s in stages],
        )
        report["results"] = str(out / "demo.json")
        return report
    finally:
        if not cfg.keep_serving:
            try:
                serve.delete(APP_NAME)
            except Exception:  # noqa: BLE001 - nothing deployed yet
                pass
        if started and not cfg.keep_serving:
            ray.shutdown()


def serve_forever(cfg: DemoConfig, stop: Optional[threading.Event] = None,
                  on_ready: Optional[Callable[[dict[str, Any]], None]] = None) -> dict[str, Any]:
    """``rayapp serve``: build (or reuse) the corpus and index of ``cfg``, deploy ``cfg.app`` and
    serve until SIGINT / SIGTERM (or ``stop`` is set); then delete the app. ``on_ready`` gets
    ``{"url", "index_path"}`` once the app answers, which is also written to
    ``results_dir/serve.json``."""
    import signal

    resolve_embedder(cfg.embed.model)
    check_generator(cfg.app.generator.model)
    started = init_ray(cfg.ray)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    try:
        corpus = build_corpus(cfg.corpus, cfg.home)
        index = build_index(corpus, cfg.embed, cfg.index, cfg.home)
        url = start_app(cfg.app, index.path)
        info = {"url": url, "index_path": str(index.path), "corpus_version": corpus.version}
        write_json_atomic(Path(cfg.results_dir) / "serve.json", info)
        log.info("serving %s (index %s); stop with Ctrl-C", url, index.path)
        if on_ready is not None:
            on_ready(info)
        stop.wait()
        return info
    finally:
        try:
            serve.delete(APP_NAME)
        except Exception:  # noqa: BLE001 - nothing deployed yet
            pass
        if started:
            ray.shutdown()


def format_answer(ans: dict[str, Any]) -> str:
    """Human-readable answer block: question, answer, cited passages, per-stage timings."""
    lines = [f"Q: {ans['question']}", f"A: {ans['answer']}"]
    numbers = {pid: i + 1 for i, pid in enumerate(ans["context_ids"])}
    if ans["citations"]:
        lines.append("Cited:")
        for c in ans["citations"]:
            lines.append(f"  [{numbers.get(c['id'], '?')}] {c['title']} ({c['id']}): {c['text'][:160]}")
    else:
        lines.append("Cited: none (the model gave no valid [n] marker); context was:")
        for h in ans["passages"]:
            lines.append(f"  {h['title']} ({h['id']})")
    lines.append("Timings: " + ", ".join(f"{t['stage']} {t['seconds'] * 1000:.1f} ms" for t in ans["timings"]))
    return "\n".join(lines)


def _stage_totals(report: dict[str, Any]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for s in report["stages"]:
        totals[s["stage"]] = round(totals.get(s["stage"], 0.0) + s["seconds"], 3)
    totals["total"] = round(sum(s["seconds"] for s in report["stages"]), 3)
    return totals


def run_bench_main(demo: DemoConfig, results_dir: Path, home: Path) -> dict[str, Any]:
    """Time the main job's stages cold (empty ``home``) then warm (same ``home``: corpus and index
    reused); the ratio cold/warm per stage is what caching saves. The converted generator is shared
    by both runs (``$RAYAPP_MODEL_CACHE``), so model conversion is counted in neither."""
    import shutil

    from rayapp.eval import write_report

    if Path(home).exists():
        shutil.rmtree(home)
    cold = run_demo(demo.model_copy(update={"home": Path(home), "results_dir": Path(results_dir) / "cold"}))
    warm = run_demo(demo.model_copy(update={"home": Path(home), "results_dir": Path(results_dir) / "warm"}))
    c, w = _stage_totals(cold), _stage_totals(warm)
    rows = [[k, c[k], w.get(k, 0.0), round(c[k] / w[k], 2) if w.get(k) else "-"] for k in c]
    data = {"cold": c, "warm": w, "ratio_cold_over_warm": {r[0]: r[3] for r in rows},
            "corpus": cold["corpus"], "questions": len(demo.questions),
            "stages_cold": cold["stages"], "stages_warm": warm["stages"]}
    path = write_report(results_dir, "bench_main", data, ["stage", "cold s", "warm s", "cold / warm"], rows,
                        notes=f"Corpus: {cold['corpus']['documents']} documents, {cold['corpus']['passages']} "
                              f"passages; {len(demo.questions)} questions.")
    print((Path(results_dir) / "bench_main.md").read_text())
    print(f"total cold/warm ratio: {data['ratio_cold_over_warm']['total']}")
    data["results"] = str(path)
    return data
