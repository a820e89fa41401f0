"""LEAR's extractor training: GRPO on Ray Train + DeepSpeed, rollouts from generation actors.

Every step, on every worker (its slice of ``questions_per_step``):

1. **sync**: rank 0 sends the current weights to the rollout actors (all of them, or the LoRA
   adapter only); the workers wait at a barrier, so no rollout samples a stale policy;
2. **rollout**: ``group_size`` extractions ``<reason>r</reason><extract>e</extract>`` per question
   from the worker's actor (sampling stops at ``</extract>``);
3. **reward**: the same policy answers under the three hard knowledge masks (o_r, o_e, o_f) and
   :func:`~rayapp.extract.lear.score_lear` scores R = 0.8 R_ans + 0.1 R_len + 0.1 R_fmt;
4. **update**: group-normalised advantages with a clipped std, and the GRPO loss (PPO clip, k3 KL
   to the frozen initial policy) over the tokens of the extraction (r, e) and of o_f only.

With ``cold_start`` set, a supervised format stage runs first (:func:`cold_start`, its own Ray Train
run in ``output_dir/cold_start``), and GRPO starts from its result, which is also the KL reference.

Per-step metrics (mean reward, format reward, compression ratio, the phase timings) go to
``output_dir/metrics.jsonl``; DeepSpeed checkpoints every ``checkpoint_every`` steps are reported
to Ray Train, which restarts failed workers from the latest one. The final policy is written as a
Hugging Face folder ``output_dir/final``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from rayapp.train._policy import init_path
from rayapp.train.config import TrainLearConfig

log = logging.getLogger(__name__)

__all__ = ["train_lear", "cold_start", "question_order", "lear_sequences"]

_SUMS = ["reward", "answer", "length", "format", "extract_well_formed", "compression", "n", "n_compression",
         "extract_tokens", "abs_advantage"]


def question_order(n_rows: int, total: int, seed: int) -> list[int]:
    """Row indices for ``total`` draws: one shuffled pass after another (epoch e uses seed + e)."""
    order: list[int] = []
    e = 0
    while len(order) < total:
        order += np.random.default_rng(seed + e).permutation(n_rows).tolist()
        e += 1
    return order[:total]


def lear_sequences(extractions: list[dict[str, Any]], answers_f: list[dict[str, Any]],
                   advantages: list[float]) -> list[tuple[list[int], list[int], Optional[list[int]], float]]:
    """The sequences the GRPO loss covers, as (prompt ids, completion ids, completion mask,
    advantage): each extraction (its r and e tokens; tags a scaffold inserted are masked out) and
    its o_f answer, both with the sample's advantage; o_r and o_e only feed the reward."""
    seqs = []
    for x, f, a in zip(extractions, answers_f, advantages):
        seqs.append((x["prompt_ids"], x["ids"], x.get("sampled"), a))
        seqs.append((f["prompt_ids"], f["ids"], None, a))
    return seqs


def _cold_start_loop(config: dict[str, Any]) -> None:
    """Ray Train worker loop of the supervised format stage: every step draws ``batch_size``
    examples (seeded, the same on every rank), each rank takes its slice, token-mean NLL."""
    import ray.train
    import torch
    import torch.distributed as dist

    from rayapp.extract.cold_start import cold_start_targets
    from rayapp.extract.data import read_extract_rows
    from rayapp.train._policy import (chat_prompt_ids, completion_width, pad_sequences, policy_engine,
                                      report_checkpoint, resume_engine, save_policy, token_logprobs)
    from rayapp.train.rl import sft_loss

    cfg = TrainLearConfig(**config["cfg"])
    cs = cfg.cold_start
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    per_worker = cs.batch_size // world
    accumulation = math.ceil(per_worker / cfg.micro_batch_size)
    tok, engine, _ = policy_engine(cfg.model_copy(update={"lr": cs.lr}), config["init"], accumulation, world,
                                   with_ref=False)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    rows, _ = read_extract_rows(Path(config["data"]))
    examples = [(chat_prompt_ids(tok, messages, prefix), tok(target, add_special_tokens=False)["input_ids"])
                for r in rows[: cs.rows]
                for messages, prefix, target in cold_start_targets(r, cs.max_rationale_words, cs.max_evidence_words)]
    out_dir = Path(config["output_dir"])
    start = resume_engine(engine, cfg.name, rank, cs.steps)
    for step in range(start, cs.steps):
        t0 = time.perf_counter()
        rng = np.random.default_rng(cfg.seed * 7919 + step)
        drawn = rng.choice(len(examples), cs.batch_size, replace=len(examples) < cs.batch_size)
        mine = [examples[i] for i in drawn[rank * per_worker: (rank + 1) * per_worker]]
        sums = torch.zeros(2, dtype=torch.float64)  # summed token NLL, target tokens
        for b in range(0, len(mine), cfg.micro_batch_size):
            ids, attn, mask = (t.to(engine.device) for t in pad_sequences(mine[b: b + cfg.micro_batch_size], pad))
            keep = completion_width(mask)
            mask = mask[:, -keep:]
            logp = token_logprobs(engine, ids, attn, keep)
            loss = sft_loss(logp, mask)
            engine.backward(loss)
            engine.step()
            sums += torch.tensor([float(loss.detach()) * float(mask.sum()), float(mask.sum())], dtype=torch.float64)
        if dist.is_initialized():
            dist.all_reduce(sums)
        metrics = {"step": step + 1, "resumed_from": start, "world_size": world, "examples": len(examples),
                   "loss": sums[0].item() / max(1.0, sums[1].item()), "step_s": time.perf_counter() - t0}
        if rank == 0:
            with open(out_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(metrics) + "\n")
            if (step + 1) % cfg.log_every == 0 or step + 1 == cs.steps:
                print(f"[{cfg.name}] step {step + 1}/{cs.steps} loss {metrics['loss']:.3f}", flush=True)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cs.steps:
            report_checkpoint(engine, metrics, step + 1)
    save_policy(engine.module, tok, out_dir / "final", {"kind": "extractor", "method": "lear-cold-start",
                                                       "init": config["init"], "steps": cs.steps},
                bool(cfg.lora), cfg.deepspeed.zero_stage == 3, rank)
    if dist.is_initialized():
        dist.barrier()


def cold_start(cfg: TrainLearConfig, init: str) -> dict[str, Any]:
    """Run the supervised format stage of ``cfg.cold_start`` from ``init`` (a Ray Train run named
    ``<name>-cold-start`` in ``output_dir/cold_start``); returns its final folder and metrics file.
    A finished stage is reused."""
    from rayapp._internal.artifacts import read_manifest
    from rayapp.train._policy import run_policy_trainer

    out = Path(cfg.output_dir).resolve() / "cold_start"
    metrics_file = str(out / "metrics.jsonl")
    if read_manifest(out / "final") is not None:
        return {"path": str(out / "final"), "reused": True, "metrics_file": metrics_file}
    stage = cfg.model_copy(update={"name": f"{cfg.name}-cold-start", "output_dir": out})
    summary = run_policy_trainer(_cold_start_loop, stage, {"data": str(Path(cfg.data).resolve())}, init)
    return {"path": summary["path"], "reused": False, "seconds": summary["seconds"], "metrics_file": metrics_file}


def _grpo_loop(config: dict[str, Any]) -> None:
    """Ray Train worker loop."""
    import ray
    import ray.train
    import torch
    import torch.distributed as dist

    from rayapp.extract.data import read_extract_rows
    from rayapp.extract.lear import (ANSWER_PREFIX, ANSWER_STOP, EXTRACT_PREFIX, EXTRACT_STOP, SCAFFOLD_TAGS,
                                     lear_answer_prompts, score_lear)
    from rayapp.extract.prompts import extractor_prompt
    from rayapp.train._policy import (completion_width, pad_sequences, policy_engine, policy_state, report_checkpoint,
                                      resume_engine, save_policy, token_logprobs)
    from rayapp.train.rl import ADVANTAGES, grpo_loss

    cfg = TrainLearConfig(**config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    zero3 = cfg.deepspeed.zero_stage == 3
    rows, _ = read_extract_rows(Path(config["data"]))
    per_worker = cfg.questions_per_step // world
    accumulation = math.ceil(per_worker * cfg.group_size * 2 / cfg.micro_batch_size)
    tok, engine, ref = policy_engine(cfg, config["init"], accumulation, world, with_ref=cfg.beta > 0)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    device = engine.device
    start = resume_engine(engine, cfg.name, rank, cfg.steps)
    actors = config["actors"]
    actor = actors[rank % len(actors)]
    order = question_order(len(rows), cfg.steps * cfg.questions_per_step, cfg.seed)
    out_dir = Path(config["output_dir"])
    metrics_path = out_dir / "metrics.jsonl"
    marker = out_dir / ".injected-failure"
    advantage_fn = ADVANTAGES["grpo"]
    node = torch.tensor(list(ray.get_runtime_context().get_node_id().encode()), dtype=torch.uint8)
    nodes = [node.clone() for _ in range(world)]
    if dist.is_initialized():
        dist.all_gather(nodes, node)
    if rank == 0:  # where the trainer workers and the rollout actors run
        from rayapp._internal.artifacts import write_json_atomic

        write_json_atomic(out_dir / "placement.json", {
            "trainer_nodes": [bytes(n.tolist()).decode() for n in nodes],
            "rollout_nodes": ray.get([a.node_id.remote() for a in actors])})
    for step in range(start, cfg.steps):
        if cfg.inject_failure_at_step == step and rank == 0 and not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            raise RuntimeError(f"injected failure at step {step} (inject_failure_at_step)")
        t0 = time.perf_counter()
        # ZeRO-3 gathers collectively (every rank takes part); otherwise rank 0 has the full weights
        state = policy_state(engine.module, bool(cfg.lora), zero3) if zero3 or rank == 0 else None
        synced = step
        if rank == 0:
            ref_state = ray.put(state)
            synced = min(ray.get([a.load_weights.remote(ref_state, step) for a in actors]))
        del state
        if dist.is_initialized():
            dist.barrier()
        t_sync = time.perf_counter()
        lo = step * cfg.questions_per_step + rank * per_worker
        batch = [rows[i] for i in order[lo: lo + per_worker]]
        prompts = [extractor_prompt(r["question"], r["passages"]) for r in batch for _ in range(cfg.group_size)]
        seed = cfg.seed * 100_003 + step * 1009 + rank
        if cfg.scaffold:
            extractions = ray.get(actor.generate_scaffolded.remote(
                prompts, cfg.max_reason_tokens, cfg.max_extract_tokens, cfg.temperature, cfg.top_p, seed,
                cfg.rollout.batch_size, *SCAFFOLD_TAGS))
        else:
            extractions = ray.get(actor.generate.remote(prompts, cfg.max_extract_tokens, cfg.temperature, cfg.top_p,
                                                        [EXTRACT_STOP], seed, cfg.rollout.batch_size, EXTRACT_PREFIX))
        t_rollout = time.perf_counter()
        answer_prompts = []
        for i, x in enumerate(extractions):
            r = batch[i // cfg.group_size]
            m = lear_answer_prompts(r["question"], r["passages"], x["text"], r["answer_format"])
            answer_prompts += [m["r"], m["e"], m["f"]]
        answers = ray.get(actor.generate.remote(answer_prompts, cfg.max_answer_tokens, cfg.answer_temperature,
                                                1.0, [ANSWER_STOP], seed + 1, cfg.rollout.batch_size, ANSWER_PREFIX))
        scores = []
        for i, x in enumerate(extractions):
            r = batch[i // cfg.group_size]
            o = {k: answers[3 * i + j]["text"] for j, k in enumerate("ref")}
            scores.append(score_lear(x["text"], o, r["answers"], r["passages"], tags_forced=x.get("forced", False),
                                     **cfg.reward.model_dump()))
        rewards = torch.tensor([s["reward"] for s in scores]).view(per_worker, cfg.group_size)
        adv = advantage_fn(rewards, min_std=cfg.min_std).flatten().tolist()
        t_reward = time.perf_counter()
        seqs = lear_sequences(extractions, [answers[3 * i + 2] for i in range(len(extractions))], adv)
        loss_sum = 0.0
        for b in range(0, len(seqs), cfg.micro_batch_size):
            part = seqs[b: b + cfg.micro_batch_size]
            ids, attn, mask = (t.to(device) for t in pad_sequences([(p, c) for p, c, _, _ in part], pad,
                                                                   [m for _, _, m, _ in part]))
            keep = completion_width(mask)
            mask = mask[:, -keep:]
            a = torch.tensor([x for _, _, _, x in part], device=device)
            logp = token_logprobs(engine, ids, attn, keep)
            ref_logp = logp.detach()
            if ref is not None:
                with torch.no_grad():
                    ref_logp = token_logprobs(ref, ids, attn, keep)
            loss = grpo_loss(logp, logp.detach(), ref_logp, a, mask, clip=cfg.clip, beta=cfg.beta)
            engine.backward(loss)
            engine.step()
            loss_sum += float(loss.detach())
        t_update = time.perf_counter()
        comp = [s["compression"] for s in scores if s["compression"] is not None]
        sums = torch.tensor([sum(s["reward"] for s in scores), sum(s["answer"] for s in scores),
                             sum(s["length"] for s in scores), sum(s["format"] for s in scores),
                             sum(s["extract_well_formed"] for s in scores), sum(comp), len(scores), len(comp),
                             sum(len(x["ids"]) for x in extractions), sum(abs(x) for x in adv)], dtype=torch.float64)
        if dist.is_initialized():
            dist.all_reduce(sums)
        tot = dict(zip(_SUMS, sums.tolist()))
        metrics = {"step": step + 1, "resumed_from": start, "world_size": world,
                   "loss": loss_sum / accumulation,
                   **{f"mean_{k}": tot[k] / tot["n"] for k in ("reward", "answer", "length", "format",
                                                               "extract_well_formed")},
                   "mean_compression": tot["compression"] / tot["n_compression"] if tot["n_compression"] else None,
                   "mean_extract_tokens": tot["extract_tokens"] / tot["n"],
                   "mean_abs_advantage": tot["abs_advantage"] / tot["n"], "actor_weights_version": synced,
                   "sync_s": t_sync - t0, "rollout_s": t_rollout - t_sync, "reward_s": t_reward - t_rollout,
                   "update_s": t_update - t_reward, "step_s": t_update - t0}
        if rank == 0:
            with open(metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(metrics) + "\n")
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                print(f"[{cfg.name}] step {step + 1}/{cfg.steps} reward {metrics['mean_reward']:.3f} "
                      f"format {metrics['mean_format']:.2f} compression {metrics['mean_compression']} "
                      f"rollout {metrics['rollout_s']:.1f}s reward {metrics['reward_s']:.1f}s "
                      f"update {metrics['update_s']:.1f}s", flush=True)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            report_checkpoint(engine, metrics, step + 1)
    save_policy(engine.module, tok, out_dir / "final", {"kind": "extractor", "method": "lear", "init": config["init"],
                                                       "steps": cfg.steps}, bool(cfg.lora), zero3, rank)
    if dist.is_initialized():
        dist.barrier()


def train_lear(cfg: TrainLearConfig) -> dict[str, Any]:
    """Run LEAR's GRPO training; returns the final folder, the last metrics and the metrics file.
    Ray must be initialised. A finished ``output_dir/final`` is reused."""
    from rayapp._internal.artifacts import read_manifest
    from rayapp.extract.data import read_extract_rows

    out = Path(cfg.output_dir).resolve()
    rows, bad = read_extract_rows(cfg.data)  # fail fast, on the driver, with the file named
    if read_manifest(out / "final") is not None:
        return {"name": cfg.name, "path": str(out / "final"), "reused": True, "metrics_file": str(out / "metrics.jsonl")}
    import ray

    from rayapp.train._policy import run_policy_trainer
    from rayapp.train.rollout import start_rollout_actors

    init = init_path(cfg.model)
    warm = None
    if cfg.cold_start:
        warm = cold_start(cfg, init)
        init = warm["path"]
    actors = start_rollout_actors(init, cfg.rollout, cfg.lora.model_dump() if cfg.lora else None)
    try:
        summary = run_policy_trainer(_grpo_loop, cfg, {"data": str(Path(cfg.data).resolve()), "actors": actors}, init)
    finally:
        for a in actors:
            ray.kill(a)
    return {**summary, "reused": False, "rows": len(rows), "bad_rows": len(bad),
            "metrics_file": str(out / "metrics.jsonl"), "cold_start": warm}
