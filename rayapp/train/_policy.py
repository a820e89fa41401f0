"""Causal-LM policy helpers shared by the GRPO (LEAR) and LPO (SEER) trainers."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Optional

__all__ = ["chat_prompt_ids", "apply_lora", "pad_sequences", "token_logprobs", "completion_width", "sequence_logprobs", "policy_state",
           "save_policy", "deepspeed_config", "init_path", "policy_engine", "run_policy_trainer", "resume_engine",
           "report_checkpoint"]


def chat_prompt_ids(tok, messages: list[dict[str, str]], prefix: str = "") -> list[int]:
    """The chat prompt's token ids, the assistant's turn opened with ``prefix``."""
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tok(text + prefix, add_special_tokens=False)["input_ids"]


def apply_lora(model, lora: Any):
    """Wrap ``model`` with peft LoRA adapters on the ``target_modules`` it has (``lora``: a
    :class:`~rayapp.train.config.LoraConfig` or its dict)."""
    from peft import LoraConfig as PeftLora
    from peft import get_peft_model

    lora = lora if isinstance(lora, dict) else lora.model_dump()
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets = [t for t in lora["target_modules"] if t in names]
    if not targets:
        raise ValueError(f"lora.target_modules: none of {lora['target_modules']} is a module of this model")
    return get_peft_model(model, PeftLora(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                          target_modules=targets))


def pad_sequences(pairs: list[tuple[list[int], list[int]]], pad_id: int,
                  masks: Optional[list[Optional[list[int]]]] = None):
    """Left-padded (ids, attention_mask, loss_mask) for (prompt ids, completion ids) pairs; the loss
    mask is 1 exactly on the completion's tokens (or where ``masks[i]``, one flag per completion
    token, is 1), which all end at the last column (so the logits of only the last columns are
    needed, and positions match left-padded generation)."""
    import torch

    width = max(len(p) + len(c) for p, c in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(pairs), width), dtype=torch.long)
    loss = torch.zeros((len(pairs), width), dtype=torch.long)
    for i, (p, c) in enumerate(pairs):
        n = len(p) + len(c)
        ids[i, width - n:] = torch.tensor(p + c, dtype=torch.long)
        attn[i, width - n:] = 1
        if c:
            m = masks[i] if masks is not None and masks[i] is not None else [1] * len(c)
            loss[i, width - len(c):] = torch.tensor(m, dtype=torch.long)
    return ids, attn, loss


def token_logprobs(model, ids, attn, keep: int):
    """log p(ids[:, t] | ids[:, :t]) for the last ``keep`` columns: [batch, keep] (float32). Only
    those columns' logits are computed (``logits_to_keep``); position ids follow the attention
    mask, as in left-padded generation."""
    keep = max(1, min(int(keep), ids.shape[1] - 1))
    positions = (attn.cumsum(-1) - 1).clamp_min(0)
    out = model(input_ids=ids, attention_mask=attn, position_ids=positions, logits_to_keep=keep + 1)
    logits = out.logits[:, :-1].float()
    target = ids[:, -keep:]
    picked = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return picked - logits.logsumexp(-1)


def completion_width(loss_mask) -> int:
    """Columns from the right that hold every row's completion."""
    return max(1, int(loss_mask.sum(-1).max()))


def sequence_logprobs(model, ids, attn, loss_mask):
    """Sum over the completion's tokens of their log-probabilities: [batch]."""
    keep = completion_width(loss_mask)
    lp = token_logprobs(model, ids, attn, keep)
    return (lp * loss_mask[:, -keep:].to(lp.dtype)).sum(-1)


def _gathered(model, zero3: bool):
    if not zero3:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)


def policy_state(model, lora: bool, zero3: bool) -> dict[str, Any]:
    """CPU copy of the weights a rollout actor needs (the LoRA adapter's only, with ``lora``).
    Under ZeRO-3 every rank must call it (the parameters are gathered collectively)."""
    with _gathered(model, zero3):
        if lora:
            from peft import get_peft_model_state_dict

            state = get_peft_model_state_dict(model)
        else:
            state = model.state_dict()
        return {k: v.detach().to("cpu", copy=True).float() for k, v in state.items()}


def save_policy(model, tok, final: Path, manifest: dict[str, Any], lora: bool, zero3: bool, rank: int) -> None:
    """Rank 0 writes a Hugging Face causal-LM folder (LoRA merged) with ``manifest.json``."""
    from rayapp._internal.artifacts import staging_dir, write_json_atomic

    with _gathered(model, zero3):
        if rank != 0:
            return
        out = model.merge_and_unload() if lora else model
        with staging_dir(final) as tmp:
            out.float().save_pretrained(tmp)
            tok.save_pretrained(tmp)
            write_json_atomic(tmp / "manifest.json", manifest)


def init_path(model: str) -> str:
    """The policy's starting folder (absolute: a worker's working directory need not be the driver's)."""
    from rayapp.models import resolve_generator

    p = resolve_generator(model)
    return str(Path(p).resolve()) if Path(p).exists() else p


def run_policy_trainer(loop, cfg, config: dict[str, Any], init: str) -> dict[str, Any]:
    """Run ``loop`` on ``cfg.workers`` Ray Train workers (DeepSpeed inside) with ``config`` plus the
    validated ``cfg``; returns the final folder and the last metrics."""
    import time

    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from rayapp._internal.artifacts import read_manifest
    from rayapp._internal.ray_utils import train_run_config

    out = Path(cfg.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        loop, train_loop_config={**config, "cfg": cfg.model_dump(mode="json"), "init": init,
                                 "output_dir": str(out), "use_gpu": cfg.use_gpu},
        scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker, **cfg.trainer_resources}),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        run_config=train_run_config(cfg.name, out / "ray", max_failures=cfg.max_failures, worker_env=cfg.worker_env,
                                    keep_checkpoints=cfg.keep_checkpoints))
    t0 = time.perf_counter()
    result = trainer.fit()
    final = out / "final"
    if read_manifest(final) is None:
        raise RuntimeError(f"{cfg.name}: training ended without writing {final}")
    return {"name": cfg.name, "path": str(final), "seconds": round(time.perf_counter() - t0, 1),
            "metrics": result.metrics or {}, "checkpoint": result.checkpoint.path if result.checkpoint else None}


def policy_engine(cfg, init: str, accumulation: int, world: int, with_ref: bool):
    """(tokenizer, DeepSpeed engine, frozen reference model or None) for a worker: the policy from
    ``init`` (gradient checkpointing and LoRA as configured), AdamW at ``cfg.lr``, ``accumulation``
    micro-batches of ``cfg.micro_batch_size`` sequences per optimizer step."""
    import os

    os.environ.setdefault("DS_ACCELERATOR", "cuda" if cfg.use_gpu else "cpu")
    import deepspeed
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(init)
    model = AutoModelForCausalLM.from_pretrained(init)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if cfg.lora:
        model = apply_lora(model, cfg.lora)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=deepspeed_config(
        cfg.micro_batch_size, accumulation, world, cfg.deepspeed.model_dump()))
    ref = None
    if with_ref:
        ref = AutoModelForCausalLM.from_pretrained(init).eval().requires_grad_(False)
        ref = ref.to(device=engine.device, dtype=torch.bfloat16 if cfg.deepspeed.bf16 else torch.float32)
    return tok, engine, ref


def resume_engine(engine, name: str, rank: int, steps: int) -> int:
    """Load the Ray Train checkpoint into ``engine`` if there is one; returns the step to start at."""
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if not ckpt:
        return 0
    with ckpt.as_directory() as d:
        _, client = engine.load_checkpoint(d, tag="state")
    start = int(client["step"])
    if rank == 0:
        print(f"[{name}] resumed at step {start}/{steps}", flush=True)
    return start


def report_checkpoint(engine, metrics: dict[str, Any], step: int) -> None:
    """Save the DeepSpeed state (every rank its shard) and report it to Ray Train with ``metrics``."""
    import tempfile

    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        engine.save_checkpoint(tmp, tag="state", client_state={"step": step})
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def deepspeed_config(micro: int, accumulation: int, world: int, ds: dict[str, Any],
                     extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    return {"train_micro_batch_size_per_gpu": micro, "gradient_accumulation_steps": accumulation,
            "train_batch_size": micro * accumulation * world, "zero_optimization": {"stage": ds["zero_stage"]},
            "bf16": {"enabled": ds["bf16"]}, "gradient_clipping": ds["gradient_clipping"],
            "zero_allow_untested_optimizer": True, "steps_per_print": 10**9, "wall_clock_breakdown": False,
            **(extra or {})}
