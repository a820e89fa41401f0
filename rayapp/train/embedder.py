"""Multi-stage embedder training on Ray Train (``TorchTrainer``) with DeepSpeed.

Per stage, every worker: loads the embedder (the previous stage's folder), computes the same
semi-homogeneous batch plan and trains on its slice of each global batch; the loss contrasts each
query with the positives and hard negatives of *every* worker (all-gather with gradient). DeepSpeed
(ZeRO 0-2 over gloo on CPU; 3 and bf16 on GPUs) owns the optimizer step. Every ``checkpoint_every``
steps each rank saves its DeepSpeed shard and reports it to Ray Train, which merges the ranks'
files into one checkpoint; after a worker failure (``FailureConfig``) the workers restart from the
latest one. Rank 0 writes a progress line, TensorBoard scalars (and MLflow params and metrics when
``mlflow_uri`` is set: one MLflow run per stage attempt), and the final
sentence-transformers folder ``output_dir/<stage>``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rayapp._internal.jsonl import read_jsonl_rows
from rayapp.train._policy import apply_lora
from rayapp.train.config import StageConfig, TrainEmbedderConfig

log = logging.getLogger(__name__)

__all__ = ["TrainingDataError", "read_training_rows", "train_embedder", "batch_texts"]


class TrainingDataError(ValueError):
    """A training file is missing or has no usable row."""


def _training_row(r: Any, _n: int) -> dict[str, Any]:
    pos = r["pos"][0] if isinstance(r["pos"], list) else r["pos"]
    if not isinstance(r["query"], str) or not r["query"].strip() or not isinstance(pos, str) or not pos.strip():
        raise ValueError("empty query or positive")
    negs = [x for x in r.get("negs", r.get("neg", [])) if isinstance(x, str) and x.strip()]
    row = {"query": r["query"], "pos": pos, "negs": negs, "task": str(r.get("task", "default")),
           "domain": str(r.get("domain") or "default"), "instruction": str(r.get("instruction", ""))}
    if "pos_score" in r and "neg_scores" in r:
        pos_score = r["pos_score"][0] if isinstance(r["pos_score"], list) else r["pos_score"]
        row["scores"] = [float(pos_score)] + [float(x) for x in r["neg_scores"]]
    return row


def read_training_rows(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, bad) from a JSONL file of ``{query, pos, negs, task, instruction}``; ``pos`` may be a
    string or a list (its first entry is the positive). Bad lines are returned with line number and
    reason, never silently dropped."""
    path = Path(path)
    if not path.is_file():
        raise TrainingDataError(f"training data not found: {path}")
    rows, bad = read_jsonl_rows(path, _training_row, (ValueError, KeyError, TypeError, IndexError))
    if not rows:
        raise TrainingDataError(f"{path}: no usable training row ({len(bad)} bad lines"
                                f"{', first: line %d %s' % (bad[0]['line'], bad[0]['error']) if bad else ''})")
    return rows, bad


def batch_texts(rows: list[dict[str, Any]], k: int, rng: np.random.Generator,
                fill: list[str]) -> tuple[list[str], list[str]]:
    """(queries with their instruction, passages = B positives then B x k negatives). A row with
    fewer than k negatives is filled with random passages from ``fill`` that are not its positive."""
    from rayapp.embed import format_query

    queries = [format_query(r["query"], r["instruction"]) for r in rows]
    passages = [r["pos"] for r in rows]
    for r in rows:
        negs = list(r["negs"][:k])
        while len(negs) < k:
            cand = fill[int(rng.integers(len(fill)))]
            if cand != r["pos"]:
                negs.append(cand)
        passages += negs
    return queries, passages


def batch_key(row: dict[str, Any], batch_by: str) -> str:
    """The label a semi-homogeneous batch shares (``StageConfig.batch_by``)."""
    return {"task": row["task"], "domain": row["domain"], "task_domain": f"{row['task']}/{row['domain']}"}[batch_by]


def _plan(rows: list[dict[str, Any]], stage: StageConfig, seed: int):
    """Batch plans epoch after epoch until there are ``stage.steps`` global batches."""
    from rayapp.train.sampler import BatchPlan, plan_batches

    tasks = [batch_key(r, stage.batch_by) for r in rows]
    batches, epoch = [], 0
    while len(batches) < stage.steps:
        plan = plan_batches(tasks, stage.batch_size, stage.homogeneous_ratio, seed=seed + epoch)
        if not plan.batches:
            raise TrainingDataError(f"stage {stage.name}: {len(rows)} rows do not fill one batch of {stage.batch_size}")
        batches += plan.batches
        epoch += 1
    return BatchPlan(batches[: stage.steps], 0), epoch


def _train_stage(config: dict[str, Any]) -> None:
    """Ray Train worker loop of one stage."""
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if config["use_gpu"] else "cpu")
    import deepspeed
    import ray.train
    import torch
    import torch.distributed as dist

    from rayapp.embed import Embedder
    from rayapp.train.losses import LOSSES, kl_distill_loss, matryoshka_loss, mix_hard_negatives

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    stage = StageConfig(**config["stage"])
    torch.set_num_threads(config["torch_threads"])
    torch.manual_seed(config["seed"])
    model = Embedder.from_pretrained(config["init"], config["pooling"], config["bidirectional"],
                                     config["gradient_checkpointing"])
    if config["lora"]:
        model.backbone = apply_lora(model.backbone, config["lora"])
    rows, _ = read_training_rows(stage.data)
    plan, _ = _plan(rows, stage, config["seed"])
    fill = [r["pos"] for r in rows]
    per_worker = stage.batch_size // world
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=stage.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, stage.warmup_steps)))
    ds = config["deepspeed"]
    engine, opt, _, sched = deepspeed.initialize(model=model, optimizer=opt, lr_scheduler=sched, config={
        "train_micro_batch_size_per_gpu": per_worker, "gradient_accumulation_steps": 1,
        "train_batch_size": per_worker * world, "zero_optimization": {"stage": ds["zero_stage"]},
        "bf16": {"enabled": ds["bf16"]}, "gradient_clipping": ds["gradient_clipping"],
        "zero_allow_untested_optimizer": True, "steps_per_print": 10**9, "wall_clock_breakdown": False})
    start = 0
    ckpt = ray.train.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            _, client = engine.load_checkpoint(d, tag="state")
            start = int(client["step"])
        if rank == 0:
            print(f"[{stage.name}] resumed at step {start}/{stage.steps}", flush=True)
    loss_fn = LOSSES[stage.loss]
    gen = torch.Generator().manual_seed(config["seed"] * 1009 + rank)
    writer = None
    if rank == 0:
        from tensorboardX import SummaryWriter

        writer = SummaryWriter(str(Path(config["output_dir"]) / "tensorboard" / stage.name))
    mlflow = None
    if rank == 0 and config["mlflow_uri"]:
        import mlflow

        if config["mlflow_uri"].startswith("file:"):  # a local folder: MLflow's file store, opted in
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(config["mlflow_uri"])
        mlflow.set_experiment(config["mlflow_experiment"])
        mlflow.start_run(run_name=stage.name)
        mlflow.log_params({"stage": stage.name, "loss": stage.loss, "batch_size": stage.batch_size, "lr": stage.lr,
                           "tau": stage.tau, "hard_negatives": stage.hard_negatives, "world_size": world,
                           "zero_stage": ds["zero_stage"], "resumed_from": start})
    device = engine.device
    k, t_start, n_seen = stage.hard_negatives, None, 0
    marker = Path(config["output_dir"]) / ".injected-failure"
    for step in range(start, stage.steps):
        if config["inject_failure_at_step"] == step and rank == 0 and not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            raise RuntimeError(f"injected failure at step {step} (inject_failure_at_step)")
        idx = plan.shard(step, rank, world)
        batch = [rows[i] for i in idx]
        rng = np.random.default_rng([config["seed"], step, rank])
        queries, passages = batch_texts(batch, k, rng, fill)
        q_enc = model.tokenize(queries, stage.max_query_tokens)
        p_enc = model.tokenize(passages, stage.max_passage_tokens)
        q = engine(q_enc["input_ids"].to(device), q_enc["attention_mask"].to(device))
        d = engine(p_enc["input_ids"].to(device), p_enc["attention_mask"].to(device))
        b = len(batch)
        p, negs = d[:b], (d[b:].view(b, k, -1) if k else None)
        extra = mix_hard_negatives(negs, stage.mix_negatives, gen) if (stage.mix_negatives and k >= 2) else None
        kw = {"tau": stage.tau, "gamma": stage.gamma, "gather": stage.cross_device_negatives and world > 1}
        if stage.matryoshka_dims:
            loss = matryoshka_loss(loss_fn, q, p, negs, stage.matryoshka_dims, stage.matryoshka_weights, extra=extra, **kw)
        else:
            loss = loss_fn(q, p, negs, extra=extra, **kw)
        loss = stage.contrastive_weight * loss
        if stage.distill_weight and k and all("scores" in r and len(r["scores"]) >= 1 + k for r in batch):
            cand = torch.cat([p[:, None], negs], dim=1)
            student = torch.einsum("bd,bcd->bc", q, cand)
            teacher = torch.tensor([r["scores"][: 1 + k] for r in batch], dtype=student.dtype, device=device)
            loss = loss + stage.distill_weight * kl_distill_loss(student, teacher, tau_s=stage.tau)
        engine.backward(loss)
        engine.step()
        n_seen += stage.batch_size
        if t_start is None:  # the first step (compiles, warms caches) is left out of the rate
            t_start, n_seen = time.perf_counter(), 0
        rate = n_seen / max(1e-9, time.perf_counter() - t_start)
        metrics = {"stage": stage.name, "step": step + 1, "resumed_from": start, "world_size": world,
                   "loss": float(loss.detach()), "samples_per_s": rate,
                   "lr": float(sched.get_last_lr()[0]) if sched is not None else stage.lr}
        if writer is not None:
            writer.add_scalar("loss", metrics["loss"], step + 1)
            writer.add_scalar("samples_per_s", rate, step + 1)
        if mlflow is not None:
            mlflow.log_metrics({"loss": metrics["loss"], "samples_per_s": rate, "lr": metrics["lr"]}, step=step + 1)
        done = step + 1 == stage.steps
        if (step + 1) % config["log_every"] == 0 or done:
            if rank == 0:
                print(f"[{stage.name}] step {step + 1}/{stage.steps} loss {metrics['loss']:.4f} "
                      f"samples/s {rate:.1f}", flush=True)
        if (step + 1) % config["checkpoint_every"] == 0 or done:
            with tempfile.TemporaryDirectory() as tmp:
                engine.save_checkpoint(tmp, tag="state", client_state={"step": step + 1})
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    if writer is not None:
        writer.close()
    if mlflow is not None:
        mlflow.end_run()
    _save_final(engine, model, config, stage, rank)
    if dist.is_initialized():
        dist.barrier()


def _save_final(engine, model, config: dict[str, Any], stage: StageConfig, rank: int) -> None:
    import contextlib

    import deepspeed

    gather = (deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)
              if config["deepspeed"]["zero_stage"] == 3 else contextlib.nullcontext())
    with gather:
        if rank != 0:
            return
        from rayapp._internal.artifacts import staging_dir, write_json_atomic

        if config["lora"]:
            model.backbone = model.backbone.merge_and_unload()
        final = Path(config["output_dir"]) / stage.name
        with staging_dir(final) as tmp:
            model.float().save(tmp)
            write_json_atomic(tmp / "manifest.json", {"kind": "embedder", "stage": stage.name, "init": config["init"],
                                                      "steps": stage.steps, "loss": stage.loss})


def train_embedder(cfg: TrainEmbedderConfig) -> list[dict[str, Any]]:
    """Run every stage in order; returns one summary per stage (output folder, final metrics).
    A stage whose output folder is complete is reused. Ray must be initialised."""
    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from rayapp._internal.artifacts import read_manifest
    from rayapp._internal.ray_utils import train_run_config
    from rayapp.models import resolve_embedder

    out_root = Path(cfg.output_dir).resolve()
    init = resolve_embedder(cfg.model)
    init = str(Path(init).resolve()) if Path(init).exists() else init  # else a hub id
    summaries = []
    for i, stage in enumerate(cfg.stages):
        if stage.batch_size % cfg.workers:
            raise ValueError(f"stages[{i}].batch_size: {stage.batch_size} is not a multiple of workers={cfg.workers}")
        rows, bad = read_training_rows(stage.data)  # fail fast, on the driver, with the file named
        final = out_root / stage.name
        if read_manifest(final) is not None:
            log.info("stage %s reused from %s", stage.name, final)
            summaries.append({"stage": stage.name, "path": str(final), "reused": True})
            init = str(final)
            continue
        _, epochs = _plan(rows, stage, cfg.seed)
        config = {
            # absolute paths: a worker's working directory need not be the driver's
            "stage": {**stage.model_dump(mode="json"), "data": str(Path(stage.data).resolve())}, "init": init, "pooling": cfg.pooling,
            "bidirectional": cfg.bidirectional, "gradient_checkpointing": cfg.gradient_checkpointing,
            "lora": cfg.lora.model_dump() if cfg.lora else None, "torch_threads": cfg.torch_threads,
            "deepspeed": cfg.deepspeed.model_dump(), "checkpoint_every": cfg.checkpoint_every,
            "log_every": cfg.log_every, "mlflow_uri": cfg.mlflow_uri, "mlflow_experiment": cfg.mlflow_experiment,
            "seed": cfg.seed, "output_dir": str(out_root), "use_gpu": cfg.use_gpu,
            "inject_failure_at_step": cfg.inject_failure_at_step if i == 0 else None,
        }
        trainer = TorchTrainer(
            _train_stage, train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.use_gpu,
                                         resources_per_worker={"CPU": cfg.cpus_per_worker}),
            torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
            run_config=train_run_config(stage.name, out_root / "ray", max_failures=cfg.max_failures,
                                        worker_env=cfg.worker_env, keep_checkpoints=cfg.keep_checkpoints),
        )
        t0 = time.perf_counter()
        result = trainer.fit()
        if read_manifest(final) is None:
            raise RuntimeError(f"stage {stage.name}: training ended without writing {final}")
        summaries.append({"stage": stage.name, "path": str(final), "reused": False, "rows": len(rows),
                          "bad_rows": len(bad), "epochs": epochs, "seconds": round(time.perf_counter() - t0, 1),
                          "metrics": result.metrics or {},
                          "checkpoint": result.checkpoint.path if result.checkpoint else None})
        init = str(final)
    return summaries
