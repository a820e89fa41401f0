"""Typed configs of sequential recommendation (SASRec / DuoRec / RaSeRec)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field

from rayapp.config import RayConfig, StrictModel, worker_env_field

__all__ = ["SASRecConfig", "Stage1Config", "Stage2Config", "TrainRecConfig"]


class SASRecConfig(StrictModel):
    """The backbone (RaSeRec's official settings)."""

    hidden: int = Field(default=64, ge=8)
    layers: int = Field(default=2, ge=1)
    heads: int = Field(default=2, ge=1)
    inner: int = Field(default=256, ge=8)
    dropout: float = Field(default=0.5, ge=0, lt=1)
    max_len: int = Field(default=50, ge=2)


class Stage1Config(StrictModel):
    """Collaborative pre-training: CE(next item) + cl_weight * DuoRec InfoNCE (cl_weight 0 = SASRec)."""

    epochs: int = Field(default=50, ge=1)
    batch_size: int = Field(default=256, ge=2)
    lr: float = Field(default=1e-3, gt=0)
    cl_weight: float = Field(default=0.1, ge=0)
    tau: float = Field(default=1.0, gt=0)
    patience: int = Field(default=5, ge=1, description="epochs without a better valid NDCG@10")


class Stage2Config(StrictModel):
    """Retrieval-augmented fine-tuning (backbone and item embeddings frozen)."""

    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=1024, ge=2)
    lr: float = Field(default=1e-3, gt=0)
    k: int = Field(default=20, ge=1, description="memories kept per query")
    candidates: int = Field(default=80, ge=1, description="retrieved before filtering (4k)")
    alpha: float = Field(default=0.5, ge=0, le=1)
    beta: float = Field(default=1.0, ge=0, le=1)
    nlist: int = Field(default=128, ge=1)
    nprobe: int = Field(default=16, ge=1)
    patience: int = Field(default=3, ge=1)


class TrainRecConfig(StrictModel):
    name: str = "raserec"
    data: Path = Path("../shared/data/amazon_beauty/Beauty.txt")
    format: Literal["sequences", "atomic"] = "sequences"
    k_core: Optional[int] = Field(default=None, ge=1, description="k-core filter (Beauty.txt is 5-core already)")
    limit_users: Optional[int] = Field(default=None, ge=3, description="first users only (small runs)")
    model: SASRecConfig = SASRecConfig()
    stage1: Stage1Config = Stage1Config()
    stage2: Optional[Stage2Config] = Stage2Config()
    workers: int = Field(default=1, ge=1)
    cpus_per_worker: float = Field(default=1.0, gt=0)
    torch_threads: int = Field(default=1, ge=1)
    worker_env: dict[str, str] = worker_env_field()
    eval_batch_size: int = Field(default=1024, ge=1)
    seed: int = 0
    max_failures: int = Field(default=1, ge=0)
    output_dir: Path = Path("results/train_rec")
    ray: RayConfig = RayConfig()
    inject_failure_at_epoch: Optional[int] = Field(default=None, description="testing: rank 0 raises once there")
