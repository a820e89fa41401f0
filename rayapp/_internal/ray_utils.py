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
