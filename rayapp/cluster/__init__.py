"""Cluster stage: KubeRay manifests and a Ray cluster-launcher YAML, generated from one config.

``build_manifests(KubeConfig, repo)`` gives RayCluster (plus a GCS fault-tolerant variant with an
external Redis), one RayJob per job, a RayService whose ``serveConfigV2`` is ``configs/serve_app.yaml``,
a PodMonitor and ``vm/cluster.yaml``; ``write_manifests`` writes them under ``cluster/``.
``validate_manifest`` checks a manifest field by field against KubeRay's API types and the
Kubernetes models; ``validate_launcher`` checks the launcher YAML against Ray's schema.
"""

from rayapp.cluster.manifests import (JobSpec, KubeConfig, VMConfig, WorkerGroup, build_manifests, missing_modules,
                                      render, write_manifests)
from rayapp.cluster.validate import ManifestError, validate_launcher, validate_manifest

__all__ = ["KubeConfig", "WorkerGroup", "JobSpec", "VMConfig", "build_manifests", "render", "write_manifests",
           "missing_modules", "validate_manifest", "validate_launcher", "ManifestError"]
