"""Benchmarks of embedder training (run by ``jobs/bench_train_quality.py`` and
``jobs/bench_train_throughput.py``); each compares against its baseline in the same run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from pydantic import Field

from rayapp.config import RayConfig, StrictModel, worker_env_field
from rayapp.train.config import DeepSpeedConfig

__all__ = ["BenchQualityConfig", "BenchThroughputConfig", "qa_training_rows", "bench_quality", "bench_throughput"]

TREC_INSTRUCTION = "Given a question, retrieve the sentence that answers it"
PUBMED_INSTRUCTION = "Given a biomedical question, retrieve the abstract that answers it"


def qa_training_rows(qa, task: str, instruction: str, k: int, seed: int = 0) -> list[dict[str, Any]]:
    """One row per (query, positive) of a QASet; negatives: the set's own judged non-answers (TREC-QA's
    label-0 candidates of the same question, hard by construction), topped up with random other
    documents when fewer than ``k``."""
    rng = np.random.default_rng(seed)
    texts = [d["text"] for d in qa.docs]
    rows = []
    for p in qa.pairs:
        for pos in p["pos"]:
            negs = [n for n in p["neg"] if n != pos][:k]
            while len(negs) < k:
                cand = texts[int(rng.integers(len(texts)))]
                if cand not in p["pos"] and cand not in negs:
                    negs.append(cand)
            rows.append({"query": p["query"], "pos": pos, "negs": negs, "task": task, "instruction": instruction})
    return rows


class BenchQualityConfig(StrictModel):
    """Fine-tune MiniLM on TREC-QA train (+ PubMedQA train) with each recipe variant, same steps and
    batch; evaluate on TREC-QA test (answer selection) and PubMedQA test (retrieval)."""

    model: str = "minilm"
    data_dir: Optional[Path] = None
    steps: int = 60
    batch_size: int = 32
    hard_negatives: int = 3
    lr: float = 3e-5
    tau: float = 0.05
    gamma: float = 0.5
    mix_negatives: int = 4
    homogeneous_ratio: float = 1.0
    matryoshka_dims: list[int] = [384, 256, 128, 64]
    matryoshka_weights: list[float] = [1.0, 0.3, 0.2, 0.1]
    pubmedqa_rows: int = 400
    max_passage_tokens: int = 128
    variants: list[str] = ["infonce", "focal", "focal_mix", "soup", "st_mnrl"]
    workers: int = 1
    cpus_per_worker: float = 1.5
    torch_threads: int = 2
    #: the whole comparison once per seed (training-row negatives, batch order, initialisation of the
    #: sentence-transformers run); the table reports means, the JSON each seed and the spread
    seeds: list[int] = Field(default=[0], min_length=1)
    results_dir: Path = Path("results/bench_train_quality")
    ray: RayConfig = RayConfig()


def _st_mnrl(cfg: BenchQualityConfig, rows: list[dict[str, Any]], out: Path, seed: int) -> float:
    """sentence-transformers' MultipleNegativesRankingLoss on the same rows, steps, batch and lr."""
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    from rayapp.embed import format_query
    from rayapp.models import resolve_embedder

    torch.set_num_threads(cfg.torch_threads)
    model = SentenceTransformer(resolve_embedder(cfg.model), device="cpu")
    model.max_seq_length = cfg.max_passage_tokens
    cols = {"anchor": [format_query(r["query"], r["instruction"]) for r in rows], "positive": [r["pos"] for r in rows]}
    for j in range(cfg.hard_negatives):
        cols[f"negative_{j}"] = [r["negs"][j] for r in rows]
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "st_tmp"), max_steps=cfg.steps, per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr, warmup_steps=0, logging_steps=10**6, save_strategy="no", report_to=[], seed=seed,
        use_cpu=True, dataloader_drop_last=True)
    t0 = time.perf_counter()
    SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(cols).shuffle(seed=seed),
                               loss=MultipleNegativesRankingLoss(model, scale=1 / cfg.tau)).train()
    secs = time.perf_counter() - t0
    model.save(str(out / "st_mnrl"))
    return secs


def bench_quality(cfg: BenchQualityConfig) -> dict[str, Any]:
    """Metrics of every variant, means over ``cfg.seeds`` (``per_seed`` holds each seed's, ``spread``
    the min and max, ``goal_per_seed`` whether the full recipe met issue 4's two goals in that seed);
    Ray must be initialised."""
    from rayapp.data.sets import load_pubmedqa, load_trecqa
    from rayapp.eval.retrieval import evaluate_embedder
    from rayapp.models import resolve_embedder

    out = Path(cfg.results_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sets = {"trec_train": load_trecqa(cfg.data_dir, "train"), "trec_test": load_trecqa(cfg.data_dir, "test"),
            "pub_train": load_pubmedqa(cfg.data_dir, "train"), "pub_test": load_pubmedqa(cfg.data_dir, "test")}

    def evaluate(path: str) -> dict[str, float]:
        t = evaluate_embedder(path, sets["trec_test"], TREC_INSTRUCTION, mode="candidates")
        p = evaluate_embedder(path, sets["pub_test"], PUBMED_INSTRUCTION, mode="corpus")
        return {"trecqa_map": t["map"], "trecqa_mrr": t["mrr"], "trecqa_ndcg@10": t["ndcg@10"],
                "pubmedqa_ndcg@10": p["ndcg@10"], "pubmedqa_recall@10": p["recall@10"]}

    base = {"path": resolve_embedder(cfg.model), "train_s": 0.0, **evaluate(resolve_embedder(cfg.model))}
    per_seed, counts = {}, {}
    for seed in cfg.seeds:
        seed_out = out if len(cfg.seeds) == 1 else out / f"seed{seed}"
        counts, trained = _train_variants(cfg, sets, seed, seed_out)
        per_seed[str(seed)] = {"base": base, **{n: {**r, **evaluate(r["path"])} for n, r in trained.items()}}
    names = list(per_seed[str(cfg.seeds[0])])
    variants, spread = {}, {}
    for n in names:
        runs = [per_seed[str(sd)][n] for sd in cfg.seeds]
        keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
        variants[n] = {"path": runs[0]["path"], **{k: float(np.mean([r[k] for r in runs])) for k in keys}}
        spread[n] = {k: [min(r[k] for r in runs), max(r[k] for r in runs)] for k in keys if k != "train_s"}
    recipe = next((n for n in ("focal_mix", "soup", "focal", "infonce") if n in names), None)
    goals = {}
    if recipe:
        for sd, v in per_seed.items():
            g = {"recipe": recipe, "ge_base_plus_0.05": v[recipe]["trecqa_map"] >= base["trecqa_map"] + 0.05}
            if "st_mnrl" in v:
                g["ge_st_mnrl"] = v[recipe]["trecqa_map"] >= v["st_mnrl"]["trecqa_map"]
            goals[sd] = g
    return {**counts, "seeds": list(cfg.seeds), "variants": variants, "spread": spread, "per_seed": per_seed,
            "goal_per_seed": goals}


def _train_variants(cfg: BenchQualityConfig, sets: dict[str, Any], seed: int, out: Path):
    """Train every variant of one seed; returns the row counts and ``{variant: {path, train_s}}``."""
    from rayapp.train.config import TrainEmbedderConfig
    from rayapp.train.embedder import train_embedder
    from rayapp.train.soup import model_soup

    out.mkdir(parents=True, exist_ok=True)
    rows = qa_training_rows(sets["trec_train"], "trecqa", TREC_INSTRUCTION, cfg.hard_negatives, seed)
    rows += qa_training_rows(sets["pub_train"], "pubmedqa", PUBMED_INSTRUCTION, cfg.hard_negatives, seed)[: cfg.pubmedqa_rows]
    data = out / "train_rows.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    stage = {"data": str(data), "steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr, "tau": cfg.tau,
             "hard_negatives": cfg.hard_negatives, "homogeneous_ratio": cfg.homogeneous_ratio,
             "max_passage_tokens": cfg.max_passage_tokens}
    recipes = {
        "infonce": {"loss": "infonce"},
        "focal": {"loss": "focal", "gamma": cfg.gamma},
        "focal_mix": {"loss": "focal", "gamma": cfg.gamma, "mix_negatives": cfg.mix_negatives,
                      "matryoshka_dims": cfg.matryoshka_dims, "matryoshka_weights": cfg.matryoshka_weights},
    }
    results: dict[str, dict[str, Any]] = {}
    for name in [v for v in cfg.variants if v in recipes]:
        tcfg = TrainEmbedderConfig(model=cfg.model, workers=cfg.workers, cpus_per_worker=cfg.cpus_per_worker,
                                   torch_threads=cfg.torch_threads, checkpoint_every=cfg.steps, log_every=10,
                                   seed=seed, output_dir=out / "runs" / name, deepspeed=DeepSpeedConfig(zero_stage=1),
                                   stages=[{"name": name, **stage, **recipes[name]}])
        t0 = time.perf_counter()
        (summary,) = train_embedder(tcfg)
        results[name] = {"path": summary["path"], "train_s": round(time.perf_counter() - t0, 1)}
    if "soup" in cfg.variants:
        ingredients = [results[n]["path"] for n in ("infonce", "focal", "focal_mix") if n in results]
        if len(ingredients) >= 2:
            results["soup"] = {"path": str(model_soup(ingredients, out / "runs" / "soup")), "train_s": 0.0,
                               "ingredients": ingredients}
    if "st_mnrl" in cfg.variants:
        secs = _st_mnrl(cfg, rows, out / "runs", seed)
        results["st_mnrl"] = {"path": str(out / "runs" / "st_mnrl"), "train_s": round(secs, 1)}
    counts = {"rows": len(rows), "tasks": {"trecqa": sum(r["task"] == "trecqa" for r in rows),
                                           "pubmedqa": sum(r["task"] == "pubmedqa" for r in rows)}}
    return counts, results


class BenchThroughputConfig(StrictModel):
    """Samples/s of the Ray Train + DeepSpeed loop vs a plain single-process PyTorch loop, same model,
    batch, data and thread budget. ``worker_env`` (the trainers' default, ``TRAIN_WORKER_ENV``) is
    given to the Ray Train workers and to the plain loop's process alike; with
    ``compare_default_env`` both loops are also timed at one worker with the environment unchanged."""

    model: str = "minilm"
    steps: int = 12
    batch_size: int = 16
    hard_negatives: int = 3
    torch_threads: int = 2
    cpus_per_worker: float = 1.5
    worker_counts: list[int] = [1, 2]
    zero_stage: int = 1
    n_rows: int = 512
    seed: int = 0
    worker_env: dict[str, str] = worker_env_field()
    compare_default_env: bool = True
    results_dir: Path = Path("results/bench_train_throughput")
    ray: RayConfig = RayConfig()


def _synthetic_rows(n: int, k: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    words = [f"word{i}" for i in range(3000)]
    text = lambda m: " ".join(rng.choice(words, m))  # noqa: E731
    return [{"query": text(12), "pos": text(60), "negs": [text(60) for _ in range(k)], "task": "t", "instruction": ""}
            for _ in range(n)]


def _plain_loop(cfg: BenchThroughputConfig) -> float:
    """The same step (encode queries + passages, InfoNCE, AdamW, clipping) in this process's main thread,
    no Ray, no DeepSpeed; samples/s after the first step."""
    import torch

    from rayapp.embed import Embedder
    from rayapp.models import resolve_embedder
    from rayapp.train.embedder import batch_texts
    from rayapp.train.losses import info_nce_loss

    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    rows = _synthetic_rows(cfg.n_rows, cfg.hard_negatives, cfg.seed)
    model = Embedder.from_pretrained(resolve_embedder(cfg.model))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    fill = [r["pos"] for r in rows]
    t0, seen = None, 0
    for step in range(cfg.steps):
        batch = rows[(step * cfg.batch_size) % len(rows):][: cfg.batch_size]
        q, p = batch_texts(batch, cfg.hard_negatives, np.random.default_rng(step), fill)
        qe, pe = model.tokenize(q, 64), model.tokenize(p, 256)
        qv, pv = model(qe["input_ids"], qe["attention_mask"]), model(pe["input_ids"], pe["attention_mask"])
        b = len(batch)
        loss = info_nce_loss(qv, pv[:b], pv[b:].view(b, cfg.hard_negatives, -1), tau=0.02, gather=False)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if t0 is None:
            t0 = time.perf_counter()
        else:
            seen += b
    return seen / (time.perf_counter() - t0)


def _plain_loop_process(cfg: BenchThroughputConfig, env: dict[str, str]) -> float:
    """``_plain_loop`` in a fresh Python process whose environment is this one's plus ``env`` (glibc
    reads its malloc settings when a process starts, so they cannot be changed in place)."""
    import subprocess
    import sys

    import rayapp

    code = ("import sys; from rayapp.train.bench import BenchThroughputConfig, _plain_loop; "
            "print(_plain_loop(BenchThroughputConfig.model_validate_json(sys.argv[1])))")
    path = os.pathsep.join([str(Path(rayapp.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", code, cfg.model_dump_json()], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": path, **env})
    if done.returncode:
        raise RuntimeError(f"plain loop failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def _ray_loop(cfg: BenchThroughputConfig, data: Path, out: Path, workers: int, env: dict[str, str]) -> float:
    import shutil

    from rayapp.train.config import TrainEmbedderConfig
    from rayapp.train.embedder import train_embedder

    shutil.rmtree(out, ignore_errors=True)
    tcfg = TrainEmbedderConfig(
        model=cfg.model, workers=workers, cpus_per_worker=cfg.cpus_per_worker / workers,
        torch_threads=max(1, cfg.torch_threads // workers), checkpoint_every=cfg.steps, log_every=cfg.steps,
        seed=cfg.seed, output_dir=out, deepspeed=DeepSpeedConfig(zero_stage=cfg.zero_stage), worker_env=env,
        stages=[{"name": "tp", "data": str(data), "steps": cfg.steps, "batch_size": cfg.batch_size * workers,
                 "lr": 2e-5, "hard_negatives": cfg.hard_negatives, "homogeneous_ratio": 1.0}])
    (summary,) = train_embedder(tcfg)
    return float(summary["metrics"]["samples_per_s"])


def bench_throughput(cfg: BenchThroughputConfig) -> dict[str, Any]:
    """Both loops with ``cfg.worker_env`` (every worker count), then, with ``compare_default_env``, both
    with the environment unchanged at one worker. Each Ray figure's ratio is against the plain loop
    under the same environment. Ray must be initialised."""
    out = Path(cfg.results_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _synthetic_rows(cfg.n_rows, cfg.hard_negatives, cfg.seed)),
                    encoding="utf-8")

    def run(env: dict[str, str], counts: list[int], tag: str) -> dict[str, Any]:
        plain = _plain_loop_process(cfg, env)
        ray_rates = {}
        for w in counts:
            rate = _ray_loop(cfg, data, out / f"run-{tag}-{w}", w, env)
            ray_rates[str(w)] = {"samples_per_s": round(rate, 2), "ratio_vs_plain": round(rate / plain, 3),
                                 "threads_per_worker": max(1, cfg.torch_threads // w)}
        return {"plain_samples_per_s": round(plain, 2), "ray": ray_rates, "env": dict(env)}

    res = run(cfg.worker_env, cfg.worker_counts, "env")
    if cfg.compare_default_env:
        res["default_env"] = run({}, [1], "default")
    return res
