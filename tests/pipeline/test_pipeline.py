"""The closed loop end to end at toy scale (real Ray Train + DeepSpeed, MiniLM, real Serve): every
step runs once, a crash resumes at the next step, an unchanged rerun skips everything, a changed
step config reruns that step and what depends on it only, and a killed process resumes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rayapp.config import ConfigError, load_config
from rayapp.pipeline import STEPS, InjectedFailure, PipelineConfig, extraction_rows, read_state, run_pipeline
from tests.conftest import REPO, SMALL_MODULES

TRAIN = {"model": "minilm", "workers": 1, "cpus_per_worker": 0.5, "checkpoint_every": 2}


def tiny(home: Path, tiny_lm_dir: str, serve_port: int, results: Path, **over) -> dict:
    cfg = {
        "name": "tiny", "home": str(home), "results_dir": str(results),
        "corpus": {"kind": "stdlib", "modules": SMALL_MODULES},
        "embed": {"batch_size": 32},
        "index": {"funnel": True},
        "pairs": {"pairs": {"k": 3, "rank_lo": 5, "rank_hi": 30}},
        "embedder": {**TRAIN, "stages": [{"name": "pretrain", "steps": 2, "batch_size": 8, "hard_negatives": 0},
                                         {"name": "finetune", "steps": 2, "batch_size": 8, "hard_negatives": 2,
                                          "loss": "focal"}]},
        "reranker": {**{k: v for k, v in TRAIN.items() if k != "model"}, "steps": 2, "batch_size": 4,
                     "hard_negatives": 2, "max_length": 128},
        "l2g": {"steps": 2, "batch_size": 4, "candidate_docs": 3, "max_queries": 12, "cpus_per_worker": 0.5},
        "extractor": {"method": "seer", "model": tiny_lm_dir, "limit": 2, "candidates": 2, "max_extract_tokens": 8,
                      "max_pairs_per_row": 1, "pairs_per_step": 1, "micro_batch_size": 1, "lr": 1e-3,
                      "cpus_per_worker": 0.5, "rollout": {"num_cpus": 0.5}},
        "deploy": {"question": "How do I write JSON to a file?", "app": {
            "http": {"port": serve_port}, "generator": {"model": tiny_lm_dir, "max_new_tokens": 4},
            "retriever": {"kind": "funnel", "funnel": {"clusters": 4, "docs": 3, "passages": 3, "post_ranker": "dense"}},
            "deployments": {n: {"num_cpus": 0.1} for n in ("Ingress", "Retriever", "Generator", "Extractor",
                                                           "Embedder", "Reranker")}}},
    }
    cfg.update(over)
    return cfg


def statuses(report) -> dict:
    return {r["step"]: r["status"] for r in report["steps"]}


def test_a_short_loop_resumes_skips_and_reruns_only_what_changed(ray_session, home, tiny_lm_dir, serve_port,
                                                                   tmp_path):
    """The default run's pipeline test: corpus -> pairs -> index -> deploy (no training steps; the
    whole loop with training is the slow test below)."""
    from ray import serve

    app = tiny(home, tiny_lm_dir, serve_port, tmp_path)["deploy"]["app"]
    app["retriever"] = {"kind": "hybrid"}
    raw = {"name": "short", "home": str(home), "results_dir": str(tmp_path / "results"),
           "corpus": {"kind": "stdlib", "modules": SMALL_MODULES}, "embed": {"batch_size": 32},
           "index": {"funnel": False}, "pairs": {"pairs": {"k": 3, "rank_lo": 5, "rank_hi": 30}},
           "deploy": {"question": "How do I write JSON to a file?", "app": app}, "fail_after": "pairs"}
    with pytest.raises(InjectedFailure, match="after step 'pairs'"):
        run_pipeline(PipelineConfig.model_validate(raw))
    assert list(read_state(home, "short")["steps"]) == ["corpus", "pairs"]
    raw.pop("fail_after")
    report = run_pipeline(PipelineConfig.model_validate(raw))
    assert statuses(report) == {"corpus": "skipped", "pairs": "skipped", "index": "ran", "deploy": "ran"}
    out = read_state(home, "short")["steps"]
    assert out["deploy"]["outputs"]["index_version"] == out["index"]["outputs"]["version"]
    assert "rayapp" not in serve.status().applications  # the smoke deploy was torn down
    again = run_pipeline(PipelineConfig.model_validate(raw))
    assert set(statuses(again).values()) == {"skipped"} and read_state(home, "short")["runs"][-1]["ran"] == []
    # a changed index config rebuilds the index and redeploys; the corpus and the pairs stay
    raw["index"]["bm25_k1"] = 1.2
    changed = run_pipeline(PipelineConfig.model_validate(raw))
    assert {s for s, st in statuses(changed).items() if st == "ran"} == {"index", "deploy"}
    assert read_state(home, "short")["steps"]["index"]["outputs"]["version"] != out["index"]["outputs"]["version"]


@pytest.mark.slow
def test_the_loop_runs_resumes_and_skips(ray_session, home, tiny_lm_dir, serve_port, tmp_path):
    from ray import serve

    raw = tiny(home, tiny_lm_dir, serve_port, tmp_path / "results", fail_after="reranker")
    with pytest.raises(InjectedFailure, match="after step 'reranker'"):
        run_pipeline(PipelineConfig.model_validate(raw))
    done = read_state(home, "tiny")["steps"]
    assert list(done) == ["corpus", "pairs", "embedder", "index", "reranker"]

    raw.pop("fail_after")
    t0 = time.perf_counter()
    report = run_pipeline(PipelineConfig.model_validate(raw))
    first_s = time.perf_counter() - t0
    # resumed: the steps finished before the crash are skipped, the rest run
    assert statuses(report) == {"corpus": "skipped", "pairs": "skipped", "embedder": "skipped", "index": "skipped",
                                "reranker": "skipped", "l2g": "ran", "reindex": "ran", "extractor": "ran",
                                "deploy": "ran"}
    state = read_state(home, "tiny")
    assert list(state["steps"]) == list(STEPS)
    out = {s: state["steps"][s]["outputs"] for s in STEPS}
    assert out["embedder"]["soup"] and len(out["embedder"]["stages"]) == 2
    assert Path(out["embedder"]["path"], "model.safetensors").is_file()
    assert Path(out["reranker"]["path"], "config.json").is_file()
    # the served index is the one re-embedded by the L2G pre-ranker, which came from the trained soup
    assert out["reindex"]["embedder"] == out["l2g"]["path"] and out["index"]["embedder"] == out["embedder"]["path"]
    assert out["reindex"]["version"] != out["index"]["version"] == report["steps"][3]["outputs"]["version"]
    assert out["deploy"]["index_version"] == out["reindex"]["version"] and out["deploy"]["persistent"] is False
    assert out["extractor"]["method"] == "seer" and Path(out["extractor"]["path"]).is_dir()
    assert "rayapp" not in serve.status().applications  # the smoke deploy was torn down
    md = (tmp_path / "results" / "pipeline.md").read_text()
    assert "| l2g | ran |" in md and json.loads((tmp_path / "results" / "pipeline.json").read_text())["steps"]

    t0 = time.perf_counter()
    again = run_pipeline(PipelineConfig.model_validate(raw))
    assert set(statuses(again).values()) == {"skipped"}
    assert time.perf_counter() - t0 < first_s / 4
    assert read_state(home, "tiny")["runs"][-1]["ran"] == []

    # a changed reranker reruns the reranker and what stands on it, nothing upstream
    raw["reranker"]["steps"] = 3
    changed = run_pipeline(PipelineConfig.model_validate(raw))
    assert {s for s, st in statuses(changed).items() if st == "ran"} == {"reranker", "l2g", "reindex", "deploy"}


def test_extraction_rows_come_from_title_body_pairs():
    rows = [{"query": "json.dumps", "pos": ["Serialize obj to a JSON formatted str. More text here."],
             "negs": ["a", "b", "c"], "task": "title-body"},
            {"query": "first sentence", "pos": ["rest"], "negs": [], "task": "summary-body"}]
    (r,) = extraction_rows(rows)
    assert r["question"] == "What does json.dumps do?" and r["passages"] == [rows[0]["pos"][0], "a", "b"]
    assert r["answers"] == ["Serialize obj to a JSON formatted str."]


@pytest.mark.parametrize("key,value,needle", [
    ("embedder", {"stages": [{"name": "a", "steps": 1}], "output_dir": "x"}, "embedder.output_dir"),
    ("reranker", {"data": "rows.jsonl"}, "reranker.data"),
    ("extractor", {"method": "dpo"}, "extractor"),
    ("bogus", 1, "bogus"),
])
def test_owned_and_unknown_keys_are_errors_naming_them(tmp_path, key, value, needle):
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({key: value}))
    with pytest.raises(ConfigError, match=needle):
        load_config(PipelineConfig, p)


def test_shipped_pipeline_configs_load():
    for name in ("pipeline.yaml", "pipeline_quick.yaml"):
        cfg = load_config(PipelineConfig, REPO / "configs" / name)
        assert cfg.pairs is not None and cfg.deploy.enabled


def test_a_killed_run_resumes_from_its_state(tmp_path):
    """A real SIGKILL of ``rayapp pipeline`` mid-run (while the index step embeds); the next run
    skips the finished steps and completes."""
    cfg = {"name": "kill", "home": str(tmp_path / "home"), "results_dir": str(tmp_path / "results"),
           "ray": {"num_cpus": 2}, "corpus": {"kind": "stdlib", "modules": ["json", "csv"]},
           "embed": {"batch_size": 16}, "index": {"funnel": False}, "pairs": {"pairs": {"k": 2, "rank_lo": 2, "rank_hi": 20}},
           "deploy": {"enabled": False}}
    path = tmp_path / "kill.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "jobs.pipeline", "--config", str(path)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while "pairs" not in read_state(tmp_path / "home", "kill")["steps"]:
        assert proc.poll() is None, "the pipeline ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "index" not in read_state(tmp_path / "home", "kill")["steps"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = {ln.split()[0]: ln.split()[1] for ln in done.stdout.splitlines() if ln.split() and ln.split()[0] in STEPS}
    assert lines == {"corpus": "skipped", "pairs": "skipped", "index": "ran"}
