"""SEER's extractor training (arXiv 2410.11315): self-aligned preference data, then lambda-weighted
DPO (LPO) on Ray Train + DeepSpeed.

1. **sample**: the base extractor (rollout actors) writes ``candidates`` extractions per row;
   near-duplicate evidence is dropped;
2. **score**: three experts per candidate (:mod:`rayapp.extract.seer`): faithfulness (evidence
   sentences aligned with the passages), helpfulness sigmoid(log p(a | q + e) - log p(a | q))
   under the generator (the same actors, teacher-forced), conciseness (cosine with a full-sentence
   answer); combined with smoothed coefficient-of-variation weights;
3. **pairs**: every (w, l) with s_w > s_l, weighted by lambda_wl, the ``max_pairs_per_row`` largest;
   written to ``output_dir/pairs.jsonl`` (token ids and texts);
4. **train**: LPO against the frozen base policy; the final policy goes to ``output_dir/final``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from rayapp.train._policy import init_path
from rayapp.train.config import TrainSeerConfig

__all__ = ["candidate_evidence", "build_seer_pairs", "train_seer"]


def _split(items: list, n: int) -> list[list]:
    return [items[i::n] for i in range(n)]


def candidate_evidence(text: str) -> str:
    """A candidate's evidence: its ``<extract>`` content (read leniently), or (SEER's own format,
    untagged) the whole output without tags."""
    import re

    from rayapp.extract.lear import read_extractor_output

    return read_extractor_output(text)[1] or re.sub(r"</?(reason|extract)>", " ", text).strip()


def build_seer_pairs(cfg: TrainSeerConfig, rows: list[dict[str, Any]], actors: list,
                     encode: Callable[[list[str]], np.ndarray]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """SEER's preference pairs for ``rows`` (steps 1-3 above); returns (pairs, stats)."""
    import ray

    from rayapp.extract.lear import EXTRACT_PREFIX, EXTRACT_STOP, SCAFFOLD_TAGS
    from rayapp.extract.prompts import answer_prompt, extractor_prompt
    from rayapp.extract.rewards import normalize_answer
    from rayapp.extract.seer import (answer_sentence, combine_experts, conciseness, faithfulness, helpfulness,
                                     preference_pairs)
    t0 = time.perf_counter()
    jobs = []
    for k, part in enumerate(_split(list(range(len(rows))), len(actors))):
        prompts = [extractor_prompt(rows[i]["question"], rows[i]["passages"]) for i in part for _ in range(cfg.candidates)]
        if cfg.scaffold:
            ref = actors[k].generate_scaffolded.remote(prompts, cfg.max_reason_tokens, cfg.max_extract_tokens,
                                                       cfg.temperature, cfg.top_p, cfg.seed + k, cfg.rollout.batch_size,
                                                       *SCAFFOLD_TAGS)
        else:
            ref = actors[k].generate.remote(prompts, cfg.max_extract_tokens, cfg.temperature, cfg.top_p,
                                            [EXTRACT_STOP], cfg.seed + k, cfg.rollout.batch_size, EXTRACT_PREFIX)
        jobs.append((part, ref))
    sampled: dict[int, list[dict]] = {}
    for part, ref in jobs:
        outs = ray.get(ref)
        for j, i in enumerate(part):
            sampled[i] = outs[j * cfg.candidates: (j + 1) * cfg.candidates]
    t_sample = time.perf_counter()
    kept: dict[int, list[tuple[dict, str]]] = {}
    for i, outs in sampled.items():
        seen = set()
        for o in outs:
            e = candidate_evidence(o["text"])
            key = normalize_answer(e)
            if key and key not in seen and o["ids"]:
                seen.add(key)
                kept[i] = kept.get(i, []) + [(o, e)]
    help_jobs = []
    for k, part in enumerate(_split(sorted(kept), len(actors))):
        prompts, targets = [], []
        for i in part:
            r, gold = rows[i], f"<answer>{rows[i]['answers'][0]}</answer>"
            fmt = r["answer_format"]
            prompts += [answer_prompt(r["question"], answer_format=fmt)]
            prompts += [answer_prompt(r["question"], evidence=e, answer_format=fmt) for _, e in kept[i]]
            targets += [gold] * (1 + len(kept[i]))
        help_jobs.append((part, actors[k].score.remote(prompts, targets)))
    helpful: dict[int, np.ndarray] = {}
    for part, ref in help_jobs:
        lp, at = ray.get(ref), 0
        for i in part:
            base, with_e = lp[at], lp[at + 1: at + 1 + len(kept[i])]
            helpful[i] = np.array([helpfulness(x, base) for x in with_e])
            at += 1 + len(kept[i])
    t_score = time.perf_counter()
    pairs, n_candidates = [], 0
    for i, cands in kept.items():
        r = rows[i]
        n_candidates += len(cands)
        if len(cands) < 2:
            continue
        ev = [e for _, e in cands]
        experts = np.stack([faithfulness(ev, r["passages"], encode), helpful[i],
                            conciseness(ev, answer_sentence(r["question"], r["answers"][0], r["reference"]), encode)],
                           axis=1)
        s = combine_experts(experts, cfg.cv_tau)
        for w, l, lam in preference_pairs(s, cfg.max_pairs_per_row):
            pairs.append({"row": r["id"], "prompt_ids": cands[w][0]["prompt_ids"], "chosen_ids": cands[w][0]["ids"],
                          "rejected_ids": cands[l][0]["ids"],
                          "chosen_mask": cands[w][0].get("sampled"), "rejected_mask": cands[l][0].get("sampled"),
                          "lambda": lam, "s_w": float(s[w]), "s_l": float(s[l]),
                          "chosen": cands[w][0]["text"], "rejected": cands[l][0]["text"],
                          "experts_w": experts[w].round(4).tolist(), "experts_l": experts[l].round(4).tolist()})
    stats = {"rows": len(rows), "rows_with_candidates": len(kept), "candidates_kept": n_candidates,
             "candidates_sampled": len(rows) * cfg.candidates, "pairs": len(pairs),
             "sample_s": round(t_sample - t0, 1), "score_s": round(t_score - t_sample, 1)}
    return pairs, stats


def _lpo_loop(config: dict[str, Any]) -> None:
    """Ray Train worker loop: LPO over the pairs file."""
    import ray.train
    import torch
    import torch.distributed as dist

    from rayapp.train._policy import (pad_sequences, policy_engine, report_checkpoint, resume_engine, save_policy,
                                      sequence_logprobs)
    from rayapp.train.grpo import question_order
    from rayapp.train.rl import lpo_loss

    cfg = TrainSeerConfig(**config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    with open(config["pairs"], encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f]
    per_worker = cfg.pairs_per_step // world
    per_micro = max(1, cfg.micro_batch_size // 2)  # a pair is two sequences
    accumulation = math.ceil(per_worker / per_micro)
    steps = config["steps"]
    tok, engine, ref = policy_engine(cfg, config["init"], accumulation, world, with_ref=True)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    device = engine.device
    start = resume_engine(engine, cfg.name, rank, steps)
    order = question_order(len(pairs), steps * cfg.pairs_per_step, cfg.seed)
    out_dir = Path(config["output_dir"])
    marker = out_dir / ".injected-failure"
    for step in range(start, steps):
        if cfg.inject_failure_at_step == step and rank == 0 and not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            raise RuntimeError(f"injected failure at step {step} (inject_failure_at_step)")
        t0 = time.perf_counter()
        lo = step * cfg.pairs_per_step + rank * per_worker
        batch = [pairs[i] for i in order[lo: lo + per_worker]]
        loss_sum, correct = 0.0, 0
        for b in range(0, len(batch), per_micro):
            part = batch[b: b + per_micro]
            seqs = [(p["prompt_ids"], p["chosen_ids"]) for p in part] + [(p["prompt_ids"], p["rejected_ids"]) for p in part]
            masks = [p.get("chosen_mask") for p in part] + [p.get("rejected_mask") for p in part]
            ids, attn, mask = (t.to(device) for t in pad_sequences(seqs, pad, masks))
            logp = sequence_logprobs(engine, ids, attn, mask)
            with torch.no_grad():
                ref_logp = sequence_logprobs(ref, ids, attn, mask)
            n = len(part)
            lam = torch.tensor([p["lambda"] for p in part], device=device)
            loss = lpo_loss(logp[:n], logp[n:], ref_logp[:n], ref_logp[n:], lam, beta=cfg.beta)
            engine.backward(loss)
            engine.step()
            loss_sum += float(loss.detach())
            margin = (logp[:n] - ref_logp[:n]) - (logp[n:] - ref_logp[n:])
            correct += int((margin > 0).sum())
        sums = torch.tensor([loss_sum / accumulation, correct, len(batch)], dtype=torch.float64)
        if dist.is_initialized():
            dist.all_reduce(sums)
        metrics = {"step": step + 1, "resumed_from": start, "world_size": world, "loss": float(sums[0]) / world,
                   "preference_accuracy": float(sums[1] / sums[2]), "step_s": time.perf_counter() - t0}
        if rank == 0:
            with open(out_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(metrics) + "\n")
            if (step + 1) % cfg.log_every == 0 or step + 1 == steps:
                print(f"[{cfg.name}] step {step + 1}/{steps} loss {metrics['loss']:.4f} "
                      f"pref-acc {metrics['preference_accuracy']:.2f}", flush=True)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == steps:
            report_checkpoint(engine, metrics, step + 1)
    save_policy(engine.module, tok, out_dir / "final", {"kind": "extractor", "method": "seer", "init": config["init"],
                                                       "steps": steps, "pairs": len(pairs)},
                bool(cfg.lora), cfg.deepspeed.zero_stage == 3, rank)
    if dist.is_initialized():
        dist.barrier()


def train_seer(cfg: TrainSeerConfig) -> dict[str, Any]:
    """Build SEER's preference pairs (reused from ``output_dir/pairs.jsonl`` when present), then
    train with LPO. Ray must be initialised. A finished ``output_dir/final`` is reused."""
    import ray

    from rayapp._internal.artifacts import read_manifest, write_json_atomic
    from rayapp.extract.data import read_extract_rows
    from rayapp.models import load_sentence_transformer
    from rayapp.train._policy import run_policy_trainer
    from rayapp.train.rollout import start_rollout_actors

    out = Path(cfg.output_dir).resolve()
    rows, bad = read_extract_rows(cfg.data)
    rows = rows[: cfg.limit]
    if read_manifest(out / "final") is not None:
        return {"name": cfg.name, "path": str(out / "final"), "reused": True}
    init = init_path(cfg.model)
    pairs_path, stats_path = out / "pairs.jsonl", out / "pairs_stats.json"
    if not stats_path.is_file():
        st = load_sentence_transformer(cfg.embedder)

        def encode(texts: list[str]) -> np.ndarray:
            return st.encode(texts, normalize_embeddings=True, batch_size=64)

        actors = start_rollout_actors(init, cfg.rollout)
        try:
            pairs, stats = build_seer_pairs(cfg, rows, actors, encode)
        finally:
            for a in actors:
                ray.kill(a)
        if not pairs:
            raise RuntimeError(f"{cfg.name}: no preference pair from {len(rows)} rows ({stats}); raise "
                               "candidates or temperature")
        out.mkdir(parents=True, exist_ok=True)
        tmp = pairs_path.with_name(".pairs.jsonl.tmp")
        tmp.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
        tmp.replace(pairs_path)
        write_json_atomic(stats_path, stats)  # last: marks the pairs file complete
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    steps = max(1, math.ceil(cfg.epochs * stats["pairs"] / cfg.pairs_per_step))
    summary = run_policy_trainer(_lpo_loop, cfg, {"pairs": str(pairs_path), "steps": steps}, init)
    return {**summary, "reused": False, "rows": len(rows), "bad_rows": len(bad), "steps": steps, "pairs": stats,
            "metrics_file": str(out / "metrics.jsonl")}
