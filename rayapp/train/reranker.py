"""Cross-encoder reranker training on Ray Train (``TorchTrainer``, DDP).

Every worker loads the same start model, draws the same shuffled order of training rows (epoch by
epoch, from the seed) and trains on its slice of each global batch of groups (1 positive + k
negatives) with :func:`~rayapp.train.losses.listwise_rerank_loss`; DDP averages the gradients.
Every ``checkpoint_every`` steps rank 0 saves model + optimizer + scheduler state and reports it to
Ray Train; after a worker failure (``FailureConfig``) the run restarts from the latest checkpoint.
The result is a Hugging Face sequence-classification folder (``output_dir/<name>``, one logit) that
:class:`rayapp.rerank.CrossEncoder`, ``transformers`` and ``sentence_transformers.CrossEncoder`` load.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rayapp.train.config import TrainRerankerConfig

log = logging.getLogger(__name__)

__all__ = ["train_reranker", "group_texts"]


def group_texts(rows: list[dict[str, Any]], k: int, rng: np.random.Generator,
                fill: list[str]) -> tuple[list[str], list[str]]:
    """(queries, passages) flattened group by group: row i gives 1 + k pairs, its positive first;
    missing negatives are random texts of ``fill`` that are not the row's positive."""
    queries, passages = [], []
    for r in rows:
        negs = list(r["negs"][:k])
        while len(negs) < k:
            cand = fill[int(rng.integers(len(fill)))]
            if cand != r["pos"] and cand not in negs:
                negs.append(cand)
        queries += [r["query"]] * (1 + k)
        passages += [r["pos"]] + negs
    return queries, passages


def _order(n: int, steps: int, batch: int, seed: int) -> np.ndarray:
    """Row indices of every global batch: a fresh permutation per epoch, cut into full batches."""
    idx: list[int] = []
    epoch = 0
    while len(idx) < steps * batch:
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        idx += perm[: (n // batch) * batch].tolist()
        epoch += 1
    return np.asarray(idx[: steps * batch]).reshape(steps, batch)


def _train_loop(config: dict[str, Any]) -> None:
    import ray.train
    import torch
    import torch.distributed as dist
    from ray.train.torch import prepare_model

    from rayapp.rerank import CrossEncoder
    from rayapp.train.embedder import read_training_rows
    from rayapp.train.losses import listwise_rerank_loss

    cfg = TrainRerankerConfig(**config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    rows, _ = read_training_rows(cfg.data)
    fill = [r["pos"] for r in rows]
    if len(rows) < cfg.batch_size:
        raise ValueError(f"{cfg.data}: {len(rows)} rows do not fill one batch of {cfg.batch_size}")
    ce = CrossEncoder.from_pretrained(config["init"], cfg.max_length, num_labels=1)
    ce.model.train()
    model = prepare_model(ce.model)
    inner = model.module if hasattr(model, "module") else model  # DDP wraps it when world > 1
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)) * max(0.0, 1 - s / cfg.steps))
    order = _order(len(rows), cfg.steps, cfg.batch_size, cfg.seed)
    per = cfg.batch_size // world
    k = cfg.hard_negatives
    start = 0
    ckpt = ray.train.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / "state.pt", weights_only=False)
        inner.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start = int(state["step"])
        if rank == 0:
            print(f"[{cfg.name}] resumed at step {start}/{cfg.steps}", flush=True)
    t0, seen = None, 0
    for step in range(start, cfg.steps):
        if config["inject_failure_at_step"] == step and rank == 0 and not Path(config["marker"]).exists():
            Path(config["marker"]).touch()
            raise RuntimeError(f"injected failure at step {step}")
        batch = [rows[i] for i in order[step][rank * per: (rank + 1) * per]]
        q, p = group_texts(batch, k, np.random.default_rng([cfg.seed, step, rank]), fill)
        enc = ce.tokenize(q, p)
        logits = model(**enc).logits[:, 0].view(len(batch), 1 + k)
        loss = listwise_rerank_loss(logits)
        opt.zero_grad()
        loss.backward()
        if cfg.gradient_clipping:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.gradient_clipping)
        opt.step()
        sched.step()
        if t0 is None:
            t0 = time.perf_counter()
        else:
            seen += cfg.batch_size
        rate = seen / max(1e-9, time.perf_counter() - t0)
        metrics = {"step": step + 1, "loss": float(loss.detach()), "groups_per_s": rate, "resumed_from": start,
                   "world_size": world}
        done = step + 1 == cfg.steps
        if rank == 0 and ((step + 1) % cfg.log_every == 0 or done):
            print(f"[{cfg.name}] step {step + 1}/{cfg.steps} loss {metrics['loss']:.4f} groups/s {rate:.2f}", flush=True)
        if (step + 1) % cfg.checkpoint_every == 0 or done:
            with tempfile.TemporaryDirectory() as tmp:
                if rank == 0:
                    torch.save({"model": inner.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                                "step": step + 1}, Path(tmp) / "state.pt")
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None)
    if rank == 0:
        from rayapp._internal.artifacts import staging_dir, write_json_atomic

        ce.model = inner
        with staging_dir(Path(config["final"])) as tmp:
            ce.save(tmp)
            write_json_atomic(tmp / "manifest.json", {"kind": "reranker", "init": config["init"], "steps": cfg.steps,
                                                      "rows": len(rows), "loss": "listwise_rerank_loss"})
    if dist.is_initialized():
        dist.barrier()


def train_reranker(cfg: TrainRerankerConfig, inject_failure_at_step: int | None = None) -> dict[str, Any]:
    """Train (or reuse, when ``output_dir/<name>`` is complete) the reranker; Ray must be initialised.
    ``inject_failure_at_step`` (tests): rank 0 raises once at that step, so the run resumes."""
    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from rayapp._internal.artifacts import read_manifest
    from rayapp._internal.ray_utils import train_run_config
    from rayapp.models import resolve_embedder
    from rayapp.train.embedder import read_training_rows

    out = Path(cfg.output_dir).resolve()
    final = out / cfg.name
    if read_manifest(final) is not None:
        return {"path": str(final), "reused": True}
    rows, bad = read_training_rows(cfg.data)  # fail fast on the driver, with the file named
    init = resolve_embedder(cfg.model)
    init = str(Path(init).resolve()) if Path(init).exists() else init
    out.mkdir(parents=True, exist_ok=True)
    config = {"cfg": {**cfg.model_dump(mode="json"), "data": str(Path(cfg.data).resolve()), "output_dir": str(out)},
              "init": init, "final": str(final), "inject_failure_at_step": inject_failure_at_step,
              "marker": str(out / f".{cfg.name}-injected-failure")}
    trainer = TorchTrainer(
        _train_loop, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker}),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        run_config=train_run_config(cfg.name, out / "ray", max_failures=cfg.max_failures, worker_env=cfg.worker_env,
                                    keep_checkpoints=2),
    )
    t0 = time.perf_counter()
    result = trainer.fit()
    if read_manifest(final) is None:
        raise RuntimeError(f"reranker training ended without writing {final}")
    return {"path": str(final), "reused": False, "rows": len(rows), "bad_rows": len(bad),
            "seconds": round(time.perf_counter() - t0, 1), "metrics": result.metrics or {}}
