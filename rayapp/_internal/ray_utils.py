"""Starting or joining Ray the same way from every job."""

from __future__ import annotations

import logging
import os

import ray

from rayapp.config import RayConfig

log = logging.getLogger(__name__)


def init_ray(cfg: RayConfig) -> bool:
    """Join the cluster at ``cfg.address`` or ``$RAY_ADDRESS``, else start a local one.

    Returns True when this call started Ray (so the caller should shut it down), False when Ray
    was already initialised or a running cluster was joined. Under ``ray job submit`` the driver
    has ``RAY_ADDRESS`` set and joins the cluster the job was submitted to.
    """
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    if ray.is_initialized():
        return False
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        log.info("joined Ray cluster at %s", address)
        return False
    ray.init(
        address="local",  # a new cluster, never whichever one /tmp/ray last recorded
        num_cpus=cfg.num_cpus,
        object_store_memory=cfg.object_store_bytes,
        include_dashboard=cfg.include_dashboard,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}},
    )
    log.info("started a local Ray cluster: %s", ray.cluster_resources())
    return True


def train_run_config(name: str, storage_path, *, max_failures: int, worker_env: dict[str, str],
                     keep_checkpoints: int | None = None):
    """Ray Train ``RunConfig`` shared by rayapp's trainers: failure retries, checkpoints kept, and the
    training workers' environment variables (``worker_env``, merged over the job's runtime env;
    ``{}`` leaves Ray's defaults)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    return RunConfig(name=name, storage_path=str(storage_path), failure_config=FailureConfig(max_failures=max_failures),
                     checkpoint_config=CheckpointConfig(num_to_keep=keep_checkpoints),
                     worker_runtime_env={"env_vars": dict(worker_env)} if worker_env else None)
