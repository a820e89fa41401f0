"""SASRec / DuoRec / RaSeRec training on Ray Train: examples, partners, learning, resume, fusion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rayapp.recommend.config import TrainRecConfig
from rayapp.recommend.train import (evaluate, length_bucketed_batches, load_interactions, same_target_partner,
                                    training_examples)


def cyclic_file(path, users=80, items=30, length=8, seed=0):
    """Sequences that walk through the items in order: the next item is learnable."""
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(users):
        s = int(rng.integers(items))
        lines.append(" ".join([f"u{u}"] + [f"i{(s + j) % items}" for j in range(length)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def small_cfg(tmp_path, **kw):
    base = dict(data=cyclic_file(tmp_path / "seq.txt"), model={"hidden": 16, "inner": 32, "dropout": 0.1, "max_len": 8},
                stage1={"epochs": 3, "batch_size": 32, "lr": 5e-3, "patience": 3},
                stage2={"epochs": 1, "batch_size": 64, "k": 4, "candidates": 16, "nlist": 4, "nprobe": 4},
                workers=2, cpus_per_worker=0.5, eval_batch_size=64, output_dir=tmp_path / "out")
    base.update(kw)
    return TrainRecConfig(**base)


def test_training_examples_and_partners():
    ex = training_examples([[1, 2, 3], [4, 5]], max_len=2)
    assert ex["targets"].tolist() == [2, 3, 5] and ex["prefix_lens"].tolist() == [1, 2, 1]
    assert ex["ids"].tolist() == [[1, 0], [1, 2], [4, 0]] and ex["users"].tolist() == [0, 0, 1]
    t = np.array([7, 7, 7, 9, 8, 8])
    p = same_target_partner(t, np.random.default_rng(0))
    assert (t[p] == t).all() and p[3] == 3 and all(p[i] != i for i in (0, 1, 2, 4, 5))


def test_length_buckets_cover_every_example_once_and_group_lengths():
    rng = np.random.default_rng(0)
    lens = rng.integers(1, 51, size=1000)
    order = rng.permutation(1000)
    batches = length_bucketed_batches(order, lens, 16, np.random.default_rng(1), pool=10)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    assert max(map(len, batches)) == 16
    spread = np.mean([np.ptp(lens[b]) for b in batches])
    random_spread = np.mean([np.ptp(lens[order[b: b + 16]]) for b in range(0, 1000, 16)])
    assert spread < random_spread / 4
    # the batches come in random order, not sorted by length
    firsts = [lens[b].min() for b in batches]
    assert firsts != sorted(firsts)


def test_batches_cut_to_their_longest_sequence_give_the_same_representations():
    from rayapp.recommend.data import pad_right
    from rayapp.recommend.sasrec import SASRec
    from rayapp.recommend.train import _encode, _forward_in_length_groups, _trim

    torch.manual_seed(0)
    m = SASRec(30, 16, 2, 2, 32, 0.1, 12).eval()
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 31, size=rng.integers(1, 15)).tolist() for _ in range(40)]
    ids, lens = pad_right(seqs, 12)
    with torch.no_grad():
        full = m(torch.from_numpy(ids), torch.from_numpy(lens))
        short = np.flatnonzero(lens <= 4)
        t_ids, t_lens = _trim(ids, lens, short)
        assert t_ids.shape[1] == 4
        assert torch.allclose(m(t_ids, t_lens), full[short], atol=1e-5)
    assert torch.allclose(_encode(m, ids, lens, batch=7), full, atol=1e-5)
    mixed = rng.permutation(40)[:13]
    with torch.no_grad():
        assert torch.allclose(_forward_in_length_groups(m, ids, lens, mixed), full[mixed], atol=1e-5)


def test_alpha_one_reproduces_the_backbone(tmp_path):
    from rayapp.recommend.raserec import RetrievalAugmentedModule
    from rayapp.recommend.sasrec import SASRec
    from rayapp.recommend.train import _memory_bank

    cfg = small_cfg(tmp_path, stage2={"alpha": 1.0, "k": 4, "candidates": 16, "nlist": 4})
    data = load_interactions(cfg)
    torch.manual_seed(0)
    m = SASRec(data.n_items, 16, 2, 2, 32, 0.1, 8).eval()
    bank = _memory_bank(m, data.train_seqs(), cfg)
    plain = evaluate(m, data, "test", cfg)
    assert evaluate(m, data, "test", cfg, ra=RetrievalAugmentedModule(16, 2, 32, 0.1), bank=bank) == plain


def test_stage2_step_changes_only_the_retrieval_module(tmp_path):
    from rayapp.recommend.raserec import RetrievalAugmentedModule
    from rayapp.recommend.sasrec import SASRec, next_item_loss
    from rayapp.recommend.train import _augment, _memory_bank

    cfg = small_cfg(tmp_path)
    data = load_interactions(cfg)
    torch.manual_seed(0)
    backbone = SASRec(data.n_items, 16, 2, 2, 32, 0.1, 8).eval().requires_grad_(False)
    ra = RetrievalAugmentedModule(16, 2, 32, 0.1)
    frozen = {k: v.clone() for k, v in backbone.state_dict().items()}
    ra_before = {k: v.clone() for k, v in ra.state_dict().items()}
    ex = training_examples(data.train_seqs(), 8)
    bank = _memory_bank(backbone, data.train_seqs(), cfg)
    opt = torch.optim.Adam([p for p in ra.parameters() if p.requires_grad], lr=1e-2)
    h = backbone(torch.from_numpy(ex["ids"][:16]), torch.from_numpy(ex["lens"][:16]))
    loss = next_item_loss(backbone.scores(_augment(ra, bank, h, ex["users"][:16], ex["prefix_lens"][:16], cfg.stage2)),
                          torch.from_numpy(ex["targets"][:16]))
    loss.backward()
    opt.step()
    assert all(torch.equal(v, frozen[k]) for k, v in backbone.state_dict().items())
    assert any(not torch.equal(v, ra_before[k]) for k, v in ra.state_dict().items())


def test_two_worker_training_learns_and_resumes(ray_session, tmp_path):
    from rayapp.recommend.sasrec import SASRec
    from rayapp.recommend.train import train_rec

    cfg = small_cfg(tmp_path, inject_failure_at_epoch=1)
    out = train_rec(cfg)
    assert out["stage1"]["metrics"]["resumed_from"] == 1 and out["stage1"]["metrics"]["world_size"] == 2
    data = load_interactions(cfg)
    torch.manual_seed(1)
    untrained = evaluate(SASRec(data.n_items, 16, 2, 2, 32, 0.1, 8).eval(), data, "test", cfg)
    assert out["stage1_test"]["hr@10"] > untrained["hr@10"] + 0.2
    assert 0 <= out["stage2_test"]["hr@10"] <= 1 and set(out["stage2_test"]) == set(untrained)
    # the serving files (bank over every prefix, ONNX exports) are made at training time
    from rayapp._internal.artifacts import read_manifest
    from rayapp.recommend._serving import serving_dir

    assert out["serving"]["path"] == str(serving_dir(cfg.output_dir))
    assert read_manifest(serving_dir(cfg.output_dir))["memories"] == sum(len(s) - 1 for s in data.seqs)


def test_a_stage_that_stopped_early_trains_no_more_when_rerun(ray_session, tmp_path):
    """Rerunning a finished job resumes each stage from its last checkpoint; one that had hit its
    patience must not train another epoch (it did: the loop restarted without the stop flag)."""
    from rayapp.recommend.train import train_rec

    cfg = small_cfg(tmp_path, stage2=None, stage1={"epochs": 6, "batch_size": 32, "lr": 1e-9, "patience": 1})
    first = train_rec(cfg)
    assert first["stage1"]["metrics"]["epoch"] < 6, "precondition: the stage stopped early"
    assert first["stage1"]["metrics"]["train_s"] > 0
    ckpts = sorted((tmp_path / "out" / "ray").glob("*/checkpoint_*"))
    (tmp_path / "out" / "serving-0123456789ab.tmp-1-beef").mkdir()  # another process's build in flight
    again = train_rec(cfg)
    assert sorted((tmp_path / "out" / "ray").glob("*/checkpoint_*")) == ckpts
    assert again["stage1_test"] == first["stage1_test"]
    # the rerun rewrote the trained files: their new serving folder replaces the old one
    assert again["serving"]["path"] != first["serving"]["path"]
    assert again["serving"]["removed_stale"] == [Path(first["serving"]["path"]).name]
    assert sorted(p.name for p in (tmp_path / "out").glob("serving-*")) == sorted(
        [Path(again["serving"]["path"]).name, "serving-0123456789ab.tmp-1-beef"])


@pytest.mark.slow
def test_relative_paths_reach_the_workers(ray_session, tmp_path, monkeypatch):
    """Ray Train workers run in their own directories: a config's relative paths must still work."""
    from rayapp.recommend.train import train_rec

    cyclic_file(tmp_path / "seq.txt")
    monkeypatch.chdir(tmp_path)
    cfg = small_cfg(tmp_path, data="seq.txt", output_dir="rel_out", stage2=None,
                    stage1={"epochs": 1, "batch_size": 32, "lr": 5e-3})
    out = train_rec(cfg)
    assert (tmp_path / "rel_out").is_dir() and out["stage1"]["metrics"]["epoch"] == 1


def test_train_job_with_missing_data_exits_2(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {tmp_path / 'none.txt'}\noutput_dir: {tmp_path / 'out'}\n")
    r = subprocess.run([sys.executable, "-m", "jobs.train_rec", "--config", str(cfg)], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[2], timeout=300)
    assert r.returncode == 2 and "interaction file not found" in r.stderr, r.stderr
    with pytest.raises(ValueError, match="stage1.epochs"):
        TrainRecConfig(stage1={"epochs": 0})


@pytest.mark.slow
def test_bench_rec_runs_the_three_models(ray_session, tmp_path):
    from rayapp.recommend.bench import BenchRecConfig, bench_rec

    cfg = small_cfg(tmp_path, workers=1, stage1={"epochs": 2, "batch_size": 32, "lr": 5e-3})
    r = bench_rec(BenchRecConfig(train=cfg, latency_queries=5, results_dir=tmp_path / "res"))
    assert set(r["models"]) == {"sasrec", "duorec", "raserec"} and r["recommend_latency_ms"]["p50"] > 0
