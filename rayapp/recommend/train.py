"""Training and evaluation of SASRec / DuoRec (stage 1) and RaSeRec (stage 2) on Ray Train.

Stage 1: every worker builds the same training examples (each prefix of each user's training part
predicts its next item), takes its slice of a seeded permutation per epoch, and DDP averages the
gradients; loss = CE(next item) + ``cl_weight`` * DuoRec InfoNCE (h' = a second dropout pass, h+ =
a training sequence with the same target). After every epoch rank 0 scores the validation split
(full ranking) and the best NDCG@10 is kept, with early stopping after ``patience`` epochs.
Stage 2: the stage-1 model is frozen; its representations of all training prefixes and their
target embeddings form the memory bank; only the retrieval-augmented module trains. Test metrics
use a bank rebuilt from the training and validation prefixes. Each epoch is a Ray Train
checkpoint; a failed worker restarts from the latest one.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from rayapp.recommend.config import TrainRecConfig
from rayapp.recommend.data import SeqData, pad_right

__all__ = ["load_interactions", "training_examples", "same_target_partner", "length_bucketed_batches", "evaluate",
           "train_rec"]


def load_interactions(cfg: TrainRecConfig) -> SeqData:
    from rayapp.recommend.data import build_seqdata, read_atomic_inter, read_sequence_file

    data = read_sequence_file(cfg.data, cfg.k_core) if cfg.format == "sequences" else read_atomic_inter(cfg.data, cfg.k_core)
    if cfg.limit_users:
        keep = dict(zip(data.users[: cfg.limit_users], [[data.item_ids[i] for i in s] for s in data.seqs]))
        data = build_seqdata(keep, data.bad)
    return data


def training_examples(seqs: list[list[int]], max_len: int) -> dict[str, np.ndarray]:
    """Every prefix s[:t] (t >= 1) of each user's sequence with target s[t]: ids, lengths,
    targets, user index and prefix length t (pass sequences that include the validation item to
    make it a target too)."""
    prefixes, targets, users, plen = [], [], [], []
    for u, s in enumerate(seqs):
        for t in range(1, len(s)):
            prefixes.append(s[:t])
            targets.append(s[t])
            users.append(u)
            plen.append(t)
    ids, lens = pad_right(prefixes, max_len)
    return {"ids": ids, "lens": lens, "targets": np.array(targets, dtype=np.int64),
            "users": np.array(users, dtype=np.int64), "prefix_lens": np.array(plen, dtype=np.int64)}


def same_target_partner(targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each example, a random other example with the same target (itself when it is alone)."""
    out = np.arange(len(targets))
    order = np.argsort(targets, kind="stable")
    bounds = np.flatnonzero(np.diff(targets[order])) + 1
    for group in np.split(order, bounds):
        if len(group) > 1:
            out[group] = rng.permutation(group)
            same = out[group] == group
            out[group[same]] = np.roll(group, 1)[same]
    return out


def length_bucketed_batches(order: np.ndarray, lens: np.ndarray, batch: int, rng: np.random.Generator,
                            pool: int = 50) -> list[np.ndarray]:
    """``order`` cut into batches of ``batch`` examples of similar length, in random order.

    Consecutive pools of ``pool`` batches (taken from the already shuffled ``order``) are sorted by
    length and cut into batches; the batches are then shuffled. Every example appears once, and a
    batch is as random as its pool, but each batch can be cut to its own longest sequence
    (:func:`_trim`): most prefixes are much shorter than ``max_len``.
    """
    batches = []
    for p in range(0, len(order), batch * pool):
        chunk = order[p: p + batch * pool]
        chunk = chunk[np.argsort(lens[chunk], kind="stable")]
        batches.extend(chunk[b: b + batch] for b in range(0, len(chunk), batch))
    return [batches[i] for i in rng.permutation(len(batches))]


def _trim(ids: np.ndarray, lens: np.ndarray, idx: np.ndarray):
    """Rows ``idx`` as tensors, cut to their longest sequence. Sequences are right-padded and the
    encoder is causal, so the positions dropped (padding after every row's last item) cannot change
    any row's representation."""
    import torch

    sub = lens[idx]
    return torch.from_numpy(ids[idx, : max(1, int(sub.max()))]), torch.from_numpy(sub)


def _forward_in_length_groups(net, ids: np.ndarray, lens: np.ndarray, idx: np.ndarray, groups: int = 4):
    """``net`` on rows ``idx`` (with gradients), as ``groups`` sub-batches of similar length, each cut
    to its longest sequence; the outputs come back in ``idx``'s order. For rows of mixed lengths
    (DuoRec's same-target partners) this saves most of the padded positions."""
    import torch

    by_len = np.argsort(lens[idx], kind="stable")
    parts = [net(*_trim(ids, lens, idx[g])) for g in np.array_split(by_len, min(groups, len(idx))) if len(g)]
    return torch.cat(parts)[torch.from_numpy(np.argsort(by_len))]


def _encode(model, ids: np.ndarray, lens: np.ndarray, batch: int):
    """Representations of all rows, computed in batches of similar length, in the rows' order."""
    import torch

    with torch.no_grad():
        return _forward_in_length_groups(model, ids, lens, np.arange(len(ids)), groups=-(-len(ids) // batch))


def _memory_bank(model, seqs: list[list[int]], cfg: TrainRecConfig):
    from rayapp.recommend.raserec import MemoryBank

    ex = training_examples(seqs, cfg.model.max_len)
    keys = _encode(model, ex["ids"], ex["lens"], cfg.eval_batch_size).numpy()
    values = model.item_emb.weight.detach()[ex["targets"]].numpy()
    return MemoryBank(cfg.model.hidden, cfg.stage2.nlist).build(keys, values, ex["users"], ex["prefix_lens"],
                                                                 cfg.stage2.nprobe, cfg.seed)


def _augment(ra, bank, h, users, prefix_lens, s2):
    """h~ for a batch: retrieve, attend, fuse."""
    import torch

    from rayapp.recommend.raserec import fuse

    k, v = bank.search(h.detach().numpy(), users, prefix_lens, s2.k, s2.candidates)
    h_s, h_t = ra(h, torch.from_numpy(k), torch.from_numpy(v))
    return fuse(h, h_s, h_t, s2.alpha, s2.beta)


def evaluate(model, data: SeqData, part: str, cfg: TrainRecConfig, ra=None, bank=None,
             ks=(5, 10, 20)) -> dict[str, float]:
    """Full-ranking HR@k / NDCG@k on the leave-one-out ``part`` (``ra`` + ``bank``: RaSeRec)."""
    import torch

    from rayapp.recommend.metrics import full_ranking_metrics, target_ranks

    hist, targets = data.split(part)
    users = np.array([u for u, s in enumerate(data.seqs) if len(s) >= 3], dtype=np.int64)
    ids, lens = pad_right(hist, cfg.model.max_len)
    hist_lens = np.array([len(x) for x in hist], dtype=np.int64)
    model.eval()
    reps = _encode(model, ids, lens, cfg.eval_batch_size)
    ranks = []
    with torch.no_grad():
        for b in range(0, len(ids), cfg.eval_batch_size):
            sl = slice(b, b + cfg.eval_batch_size)
            h = reps[sl]
            if ra is not None:
                ra.eval()
                h = _augment(ra, bank, h, users[sl], hist_lens[sl], cfg.stage2)
            ranks.append(target_ranks(model.scores(h).numpy(), targets[sl]))
    return full_ranking_metrics(np.concatenate(ranks), ks)


def _stage_loop(config: dict[str, Any]) -> None:
    """Ray Train worker loop of one stage (``config['stage']``: 1 or 2)."""
    import tempfile

    import ray.train
    import torch
    import torch.distributed as dist
    from ray.train.torch import prepare_model

    from rayapp.recommend.raserec import RetrievalAugmentedModule
    from rayapp.recommend.sasrec import SASRec, duorec_contrastive_loss, next_item_loss

    cfg = TrainRecConfig(**config["cfg"])
    stage = config["stage"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    data = load_interactions(cfg)
    m = cfg.model
    backbone = SASRec(data.n_items, m.hidden, m.layers, m.heads, m.inner, m.dropout, m.max_len)
    train_seqs = data.train_seqs()
    ex = training_examples(train_seqs, m.max_len)
    bank = None
    if stage == 1:
        sc = cfg.stage1
        trainable = backbone
    else:
        sc = cfg.stage2
        backbone.load_state_dict(torch.load(config["stage1_model"], weights_only=True))
        backbone.eval().requires_grad_(False)
        bank = _memory_bank(backbone, train_seqs, cfg)
        trainable = RetrievalAugmentedModule(m.hidden, m.heads, m.inner, m.dropout)
    net = prepare_model(trainable)
    inner = net.module if hasattr(net, "module") else net
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=sc.lr)
    state = {"epoch": 0, "best": -1.0, "best_state": copy.deepcopy(inner.state_dict()), "bad": 0}
    ckpt = ray.train.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            saved = torch.load(Path(d) / "state.pt", weights_only=False)
        inner.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        state = saved["state"]
        if rank == 0:
            print(f"[{cfg.name} stage {stage}] resumed at epoch {state['epoch']}", flush=True)
    start = state["epoch"]
    # a stage that had already stopped early stays stopped when its run is resumed
    last = start if state["bad"] >= sc.patience else sc.epochs
    per = max(1, sc.batch_size // world)
    marker = Path(config["output_dir"]) / f".injected-failure-{stage}"
    for epoch in range(start, last):
        if cfg.inject_failure_at_epoch == epoch and rank == 0 and not marker.exists():
            marker.touch()
            raise RuntimeError(f"injected failure at epoch {epoch}")
        t0 = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, stage, epoch])
        perm = rng.permutation(len(ex["targets"]))
        # as torch's DistributedSampler: wrap around so that every worker gets as many batches
        order = np.concatenate([perm, perm[: (-len(perm)) % world]])[rank::world]
        partner = same_target_partner(ex["targets"], rng) if stage == 1 and cfg.stage1.cl_weight > 0 else None
        net.train()
        total, n = 0.0, 0
        for idx in length_bucketed_batches(order, ex["lens"], per, rng):
            ids, lens = _trim(ex["ids"], ex["lens"], idx)
            tgt = torch.from_numpy(ex["targets"][idx])
            if stage == 1:
                h = net(ids, lens)
                loss = next_item_loss(inner.scores(h), tgt)
                if partner is not None:
                    h2 = net(ids, lens)  # a second dropout pass
                    hp = _forward_in_length_groups(net, ex["ids"], ex["lens"], partner[idx])
                    loss = loss + cfg.stage1.cl_weight * duorec_contrastive_loss(h2, hp, cfg.stage1.tau)
            else:
                with torch.no_grad():
                    h = backbone(ids, lens)
                h_aug = _augment(net, bank, h, ex["users"][idx], ex["prefix_lens"][idx], sc)
                loss = next_item_loss(backbone.scores(h_aug), tgt)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n = total + float(loss.detach()) * len(idx), n + len(idx)
        train_s = time.perf_counter() - t0
        state["train_s"] = state.get("train_s", 0.0) + train_s  # every epoch's training, across resumes
        stop = torch.zeros(1)
        metrics: dict[str, Any] = {"stage": stage, "epoch": epoch + 1, "loss": total / max(1, n),
                                   "epoch_s": train_s, "train_s": state["train_s"], "world_size": world,
                                   "resumed_from": start}
        if rank == 0:
            model_for_eval = inner if stage == 1 else backbone
            valid = evaluate(model_for_eval, data, "valid", cfg, ra=inner if stage == 2 else None, bank=bank)
            metrics.update({f"valid_{k}": v for k, v in valid.items()})
            if valid["ndcg@10"] > state["best"]:
                state.update(best=valid["ndcg@10"], best_state=copy.deepcopy(inner.state_dict()), bad=0)
            else:
                state["bad"] += 1
            stop[0] = float(state["bad"] >= sc.patience)
            print(f"[{cfg.name} stage {stage}] epoch {epoch + 1}/{sc.epochs} loss {metrics['loss']:.4f} "
                  f"valid NDCG@10 {valid['ndcg@10']:.4f} HR@10 {valid['hr@10']:.4f} ({train_s:.1f} s)", flush=True)
        if dist.is_initialized():
            dist.broadcast(stop, 0)
        state["epoch"] = epoch + 1
        with tempfile.TemporaryDirectory() as tmp:
            if rank == 0:
                torch.save({"model": inner.state_dict(), "opt": opt.state_dict(), "state": state}, Path(tmp) / "state.pt")
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None)
        if stop[0] > 0:
            break
    if rank == 0:
        torch.save(state["best_state"], Path(config["final"]))
    if dist.is_initialized():
        dist.barrier()


def _fit(stage: int, cfg: TrainRecConfig, out: Path, extra: dict[str, Any]) -> dict[str, Any]:
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    from rayapp._internal.ray_utils import train_run_config

    final = out / f"stage{stage}.pt"
    trainer = TorchTrainer(
        _stage_loop, train_loop_config={"cfg": cfg.model_dump(mode="json"), "stage": stage, "final": str(final),
                                        "output_dir": str(out), **extra},
        scaling_config=ScalingConfig(num_workers=cfg.workers, resources_per_worker={"CPU": cfg.cpus_per_worker}),
        run_config=train_run_config(f"{cfg.name}-stage{stage}", out / "ray", max_failures=cfg.max_failures,
                                    worker_env=cfg.worker_env))
    t0 = time.perf_counter()
    result = trainer.fit()
    if not final.is_file():
        raise RuntimeError(f"{cfg.name} stage {stage}: training ended without writing {final}")
    return {"path": str(final), "seconds": round(time.perf_counter() - t0, 1), "metrics": result.metrics or {}}


def _write_serving_files(out: Path, cfg: TrainRecConfig, data: SeqData, stage1_model: str) -> None:
    """What :class:`~rayapp.recommend.service.RecommenderService` loads: the config, the item ids and
    every user's history (original ids), next to ``stage1.pt`` / ``stage2.pt``."""
    import json
    import shutil

    from rayapp._internal.artifacts import write_json_atomic

    if Path(stage1_model).resolve() != (out / "stage1.pt").resolve():
        shutil.copyfile(stage1_model, out / "stage1.pt")
    write_json_atomic(out / "items.json", data.item_ids)
    histories = {u: [data.item_ids[i] for i in s] for u, s in zip(data.users, data.seqs)}
    (out / "histories.json").write_text(json.dumps(histories), encoding="utf-8")
    write_json_atomic(out / "manifest.json", {"kind": "recommender", "config": cfg.model_dump(mode="json")})


def train_rec(cfg: TrainRecConfig, stage1_model: Optional[str] = None) -> dict[str, Any]:
    """Stage 1 (unless ``stage1_model`` is given), then stage 2 when configured; test metrics of each.
    Ray must be initialised."""
    import torch

    from rayapp.recommend.raserec import RetrievalAugmentedModule
    from rayapp.recommend.sasrec import SASRec

    out = Path(cfg.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # Ray Train workers do not run in the driver's working directory: give them absolute paths
    cfg = cfg.model_copy(update={"data": Path(cfg.data).resolve(), "output_dir": out})
    data = load_interactions(cfg)  # fail fast on the driver, with the file named
    m = cfg.model
    summary: dict[str, Any] = {"users": len(data.users), "items": data.n_items, "bad_lines": len(data.bad),
                               "interactions": sum(map(len, data.seqs))}
    if stage1_model is None:
        summary["stage1"] = _fit(1, cfg, out, {})
        stage1_model = summary["stage1"]["path"]
    backbone = SASRec(data.n_items, m.hidden, m.layers, m.heads, m.inner, m.dropout, m.max_len)
    backbone.load_state_dict(torch.load(stage1_model, weights_only=True))
    backbone.eval()
    summary["stage1_test"] = evaluate(backbone, data, "test", cfg)
    _write_serving_files(out, cfg, data, stage1_model)
    if cfg.stage2 is not None:
        summary["stage2"] = _fit(2, cfg, out, {"stage1_model": str(Path(stage1_model).resolve())})
        ra = RetrievalAugmentedModule(m.hidden, m.heads, m.inner, m.dropout)
        ra.load_state_dict(torch.load(summary["stage2"]["path"], weights_only=True))
        bank = _memory_bank(backbone, [s[:-1] for s in data.seqs if len(s) >= 3], cfg)  # train + valid
        summary["stage2_test"] = evaluate(backbone, data, "test", cfg, ra=ra, bank=bank)
    from rayapp.recommend._serving import prepare_serving, prune_serving

    t0 = time.perf_counter()
    serving = prepare_serving(out)
    summary["serving"] = {"path": str(serving), "seconds": round(time.perf_counter() - t0, 1),
                          "removed_stale": [p.name for p in prune_serving(out, serving)]}
    return summary
