"""Benchmark of the recommend stage: SASRec, DuoRec and RaSeRec on one data set in one run.

SASRec = stage 1 with ``cl_weight: 0``; DuoRec = stage 1 with the contrastive term; RaSeRec =
stage 2 on top of that DuoRec model (as in the paper). Full-ranking HR@k / NDCG@k on the test split,
seconds per training epoch, and the latency of one recommendation (``RecommenderService``, in
process: the model and bank work behind ``/v1/recommend``, without HTTP).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from rayapp.config import RayConfig, StrictModel
from rayapp.recommend.config import TrainRecConfig

__all__ = ["BenchRecConfig", "bench_rec"]

#: RaSeRec paper, Amazon Beauty (Table 2); official log at @10: DuoRec 0.0834 / 0.0431.
PAPER_BEAUTY = {"raserec": {"hr@5": 0.0569, "hr@10": 0.0860, "ndcg@5": 0.0369, "ndcg@10": 0.0463},
                "duorec": {"hr@10": 0.0834, "ndcg@10": 0.0431}}


class BenchRecConfig(StrictModel):
    train: TrainRecConfig
    latency_queries: int = 200
    ray: RayConfig = RayConfig()
    results_dir: Path = Path("results/bench_rec")


def _row(test: dict[str, float], fit: dict[str, Any]) -> dict[str, Any]:
    """A model's test metrics with its training time: ``epoch_s`` of the last epoch, ``train_s`` summed
    over every epoch (across resumes) and ``fit_s``, this call's wall time (only the resumed part)."""
    m = fit["metrics"]
    return {**test, "epochs": m.get("epoch"), "epoch_s": m.get("epoch_s"), "train_s": m.get("train_s"),
            "fit_s": fit["seconds"]}


def bench_rec(cfg: BenchRecConfig) -> dict[str, Any]:
    from rayapp.recommend.service import RecommenderService
    from rayapp.recommend.train import train_rec

    base = Path(cfg.train.output_dir)
    rows: dict[str, dict[str, Any]] = {}
    sas = cfg.train.model_copy(update={"output_dir": base / "sasrec", "stage2": None,
                                       "stage1": cfg.train.stage1.model_copy(update={"cl_weight": 0.0})})
    t0 = time.perf_counter()
    s = train_rec(sas)
    rows["sasrec"] = _row(s["stage1_test"], s["stage1"])
    duo = cfg.train.model_copy(update={"output_dir": base / "raserec"})
    d = train_rec(duo)
    rows["duorec"] = _row(d["stage1_test"], d["stage1"])
    rows["raserec"] = _row(d["stage2_test"], d["stage2"])
    svc = RecommenderService(base / "raserec")
    rng = np.random.default_rng(0)
    users = list(svc.users)
    lat = []
    for u in rng.choice(len(users), size=min(cfg.latency_queries, len(users)), replace=False):
        t = time.perf_counter()
        svc.recommend(user=users[int(u)], k=10)
        lat.append(time.perf_counter() - t)
    return {"data": {k: d[k] for k in ("users", "items", "interactions")}, "models": rows, "paper_beauty": PAPER_BEAUTY,
            "raserec_vs_duorec_ndcg@10": rows["raserec"]["ndcg@10"] / max(rows["duorec"]["ndcg@10"], 1e-12),
            "recommend_latency_ms": {"p50": float(np.percentile(lat, 50) * 1e3), "p95": float(np.percentile(lat, 95) * 1e3)},
            "seconds": round(time.perf_counter() - t0, 1)}
