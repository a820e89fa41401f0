"""Embedder training on Ray Train + DeepSpeed (CPU, gloo): cross-device negatives, multi-stage,
checkpoint resume after an injected failure, a sentence-transformers folder out."""

import json
import os

import numpy as np
import pytest
import torch

from rayapp.train.config import StageConfig, TrainEmbedderConfig
from rayapp.train.embedder import TrainingDataError, batch_texts, read_training_rows


def write_rows(path, n=24):
    tasks = ["qa", "title-body", "sts"]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"query": f"question number {i} about topic {i % 5}", "pos": f"answer {i} for topic {i % 5}",
                                "negs": [f"unrelated passage {i} {j}" for j in range(3)], "task": tasks[i % 3],
                                "instruction": "Given a question, retrieve its answer" if i % 3 == 0 else ""}) + "\n")
        f.write("{not json\n")
        f.write(json.dumps({"query": "", "pos": "x"}) + "\n")
    return path


def test_rows_reader_counts_bad_lines(tmp_path):
    rows, bad = read_training_rows(write_rows(tmp_path / "rows.jsonl"))
    assert len(rows) == 24 and [b["line"] for b in bad] == [25, 26]
    assert "JSONDecodeError" in bad[0]["error"] and "empty query" in bad[1]["error"]
    (tmp_path / "bad.jsonl").write_text("[]\n", encoding="utf-8")
    with pytest.raises(TrainingDataError, match="no usable training row .*line 1"):
        read_training_rows(tmp_path / "bad.jsonl")
    with pytest.raises(TrainingDataError, match="not found"):
        read_training_rows(tmp_path / "missing.jsonl")


def test_batch_texts_fill_and_instruction(tmp_path):
    rows, _ = read_training_rows(write_rows(tmp_path / "rows.jsonl"))
    q, p = batch_texts(rows[:2], 5, np.random.default_rng(0), [r["pos"] for r in rows])
    assert q[0].startswith("Instruct: Given a question") and q[1] == rows[1]["query"]
    assert p[:2] == [rows[0]["pos"], rows[1]["pos"]] and len(p) == 2 + 2 * 5
    assert p[2:5] == rows[0]["negs"] and rows[0]["pos"] not in p[5:7]


def test_config_errors_name_the_problem(tmp_path):
    st = {"name": "ft", "data": str(tmp_path / "r.jsonl"), "steps": 2}
    with pytest.raises(ValueError, match="unknown loss 'focall'"):
        StageConfig(**st, loss="focall")
    with pytest.raises(ValueError, match="matryoshka_dims has 2 entries but matryoshka_weights has 1"):
        StageConfig(**st, matryoshka_dims=[32, 16], matryoshka_weights=[1.0])
    with pytest.raises(ValueError, match="ZeRO stage 3 and bf16 need use_gpu"):
        TrainEmbedderConfig(stages=[st], deepspeed={"zero_stage": 3})
    with pytest.raises(ValueError, match="names must be unique"):
        TrainEmbedderConfig(stages=[st, st])


def _gather_worker(config):
    """Each of 2 ranks: local loss with cross-device negatives; writes its loss and gradients."""
    import ray.train
    import torch.distributed as dist

    from rayapp.train.losses import focal_info_nce_loss

    rank = ray.train.get_context().get_world_rank()
    q, p, n = (torch.tensor(x, dtype=torch.float64) for x in (config["q"], config["p"], config["n"]))
    sl = slice(rank * 2, rank * 2 + 2)
    qr, pr, nr = q[sl].clone().requires_grad_(), p[sl].clone().requires_grad_(), n[sl].clone().requires_grad_()
    loss = focal_info_nce_loss(qr, pr, nr, tau=0.1, gamma=0.5, gather=True)
    loss.backward()
    out = {"loss": float(loss), "gp": pr.grad.tolist(), "gq": qr.grad.tolist(), "world": dist.get_world_size()}
    with open(f"{config['dir']}/rank{rank}.json", "w") as f:
        json.dump(out, f)


def test_cross_device_negatives_match_one_big_batch(ray_session, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    import torch.nn.functional as F

    from rayapp.train.losses import focal_info_nce_loss

    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(4, 6, generator=g, dtype=torch.float64), dim=-1)
    p = F.normalize(torch.randn(4, 6, generator=g, dtype=torch.float64), dim=-1)
    n = F.normalize(torch.randn(4, 2, 6, generator=g, dtype=torch.float64), dim=-1)
    TorchTrainer(_gather_worker, train_loop_config={"q": q.tolist(), "p": p.tolist(), "n": n.tolist(), "dir": str(tmp_path)},
                 scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
                 torch_config=TorchConfig(backend="gloo"),
                 run_config=RunConfig(name="gather", storage_path=str(tmp_path / "ray"))).fit()
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["world"] == 2
    qa, pa, na = q.clone().requires_grad_(), p.clone().requires_grad_(), n.clone().requires_grad_()
    full = focal_info_nce_loss(qa, pa, na, tau=0.1, gamma=0.5, gather=False)
    full.backward()
    # each rank's loss is the mean over its own queries against the global candidates
    assert (ranks[0]["loss"] + ranks[1]["loss"]) / 2 == pytest.approx(float(full), rel=1e-10)
    # gradients flow across workers: the all-gather's backward sums every rank's gradient
    gp = torch.tensor(ranks[0]["gp"] + ranks[1]["gp"], dtype=torch.float64)
    assert torch.allclose(gp, 2 * pa.grad, atol=1e-10)
    gq = torch.tensor(ranks[0]["gq"] + ranks[1]["gq"], dtype=torch.float64)
    assert torch.allclose(gq, 2 * qa.grad, atol=1e-10)


def _env_worker(config):
    with open(os.path.join(config["dir"], "env.json"), "w") as f:
        json.dump({k: os.environ.get(k) for k in config["keys"]}, f)


def test_training_workers_get_worker_env_on_top_of_the_job_env(ray_session, tmp_path):
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    from rayapp._internal.ray_utils import train_run_config
    from rayapp.config import TRAIN_WORKER_ENV

    cfg = TrainEmbedderConfig(stages=[{"name": "s", "data": str(tmp_path / "rows.jsonl"), "steps": 1}])
    assert cfg.worker_env == TRAIN_WORKER_ENV and cfg.worker_env is not TRAIN_WORKER_ENV
    assert TrainEmbedderConfig(worker_env={}, stages=cfg.stages).worker_env == {}
    keys = [*TRAIN_WORKER_ENV, "TOKENIZERS_PARALLELISM", "PYTHONPATH"]
    TorchTrainer(_env_worker, train_loop_config={"dir": str(tmp_path), "keys": keys},
                 scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5}),
                 run_config=train_run_config("env", tmp_path / "ray", max_failures=0,
                                             worker_env={**cfg.worker_env, "MALLOC_ARENA_MAX": "2"})).fit()
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["MALLOC_ARENA_MAX"] == "2"
    assert env["MALLOC_MMAP_THRESHOLD_"] == TRAIN_WORKER_ENV["MALLOC_MMAP_THRESHOLD_"]
    # merged over the job's runtime env (conftest's ray.init), not in place of it
    assert env["TOKENIZERS_PARALLELISM"] == "false" and env["PYTHONPATH"]


def test_two_stage_training_with_resume_after_a_failure(ray_session, tiny_lm_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    from rayapp.train.embedder import train_embedder

    data = write_rows(tmp_path / "rows.jsonl")
    cfg = TrainEmbedderConfig(
        model=tiny_lm_dir, workers=2, cpus_per_worker=0.5, checkpoint_every=2, log_every=1, output_dir=tmp_path / "out",
        inject_failure_at_step=3, deepspeed={"zero_stage": 2}, mlflow_uri=(tmp_path / "mlruns").as_uri(),
        stages=[{"name": "pretrain", "data": str(data), "steps": 5, "batch_size": 8, "lr": 1e-3, "hard_negatives": 0},
                {"name": "finetune", "data": str(data), "steps": 3, "batch_size": 8, "lr": 1e-3, "loss": "focal",
                 "hard_negatives": 2, "mix_negatives": 2, "homogeneous_ratio": 0.75,
                 "matryoshka_dims": [32, 16], "matryoshka_weights": [1.0, 0.3]}])
    out = train_embedder(cfg)
    pre, ft = out
    assert (tmp_path / "out" / ".injected-failure").exists()
    assert pre["metrics"]["step"] == 5 and pre["metrics"]["resumed_from"] == 2  # restarted from the step-2 checkpoint
    assert pre["metrics"]["world_size"] == 2 and pre["bad_rows"] == 2
    assert ft["metrics"]["step"] == 3 and ft["metrics"]["resumed_from"] == 0 and np.isfinite(ft["metrics"]["loss"])
    # the stages changed the weights, and the result is a sentence-transformers folder
    st = SentenceTransformer(ft["path"], device="cpu")
    v = st.encode(["question number 1 about topic 1", "answer 1 for topic 1"], normalize_embeddings=True)
    assert v.shape == (2, 32)
    from rayapp.embed import Embedder

    start = Embedder.from_pretrained(tiny_lm_dir).backbone.state_dict()
    end = Embedder.from_pretrained(ft["path"]).backbone.state_dict()
    assert not torch.allclose(start["layers.0.self_attn.q_proj.weight"], end["layers.0.self_attn.q_proj.weight"])
    # rank 0 logged every stage attempt to MLflow: the failed one, the resumed one, the fine-tuning
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient((tmp_path / "mlruns").as_uri())
    runs = client.search_runs([client.get_experiment_by_name("rayapp-train-embedder").experiment_id])
    names = sorted(r.info.run_name for r in runs)
    assert names == ["finetune", "pretrain", "pretrain"], names
    resumed = [r for r in runs if r.info.run_name == "pretrain" and r.data.params["resumed_from"] == "2"]
    assert [m.step for m in client.get_metric_history(resumed[0].info.run_id, "loss")] == [3, 4, 5]
    # a second run reuses the finished stages
    again = train_embedder(cfg)
    assert all(s["reused"] for s in again)
