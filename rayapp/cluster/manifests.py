"""KubeRay manifests (RayCluster, RayJob per job, RayService, PodMonitor) and a Ray cluster-launcher
YAML for VMs, all generated from one :class:`KubeConfig` plus the Serve config file, so the
RayService's ``serveConfigV2`` is the file ``serve deploy`` takes and the clusters of every
manifest share one spec."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import Field

from rayapp.config import StrictModel

__all__ = ["WorkerGroup", "JobSpec", "VMConfig", "KubeConfig", "build_manifests", "write_manifests",
           "job_entrypoint_module"]

METRICS_PORT = 8080  # Ray's metrics export port in the pods (KubeRay's convention)


class WorkerGroup(StrictModel):
    """One KubeRay worker group; ``gpus > 0`` asks for ``nvidia.com/gpu`` and tolerates GPU taints."""

    name: str
    replicas: int = Field(default=1, ge=0)
    min_replicas: int = Field(default=0, ge=0)
    max_replicas: int = Field(default=4, ge=1)
    cpus: int = Field(default=4, ge=1)
    memory: str = "16Gi"
    gpus: int = Field(default=0, ge=0)


class JobSpec(StrictModel):
    """A RayJob: ``python -m jobs.<module> --config <config>`` on its own cluster."""

    module: str
    config: str
    active_deadline_s: int = Field(default=6 * 3600, ge=60)
    ttl_after_finished_s: int = Field(default=3600, ge=0)
    #: "gpu": run on a cluster whose workers are the GPU groups only
    workers: Literal["all", "gpu"] = "all"
    #: "own": a RayCluster made for the job and deleted after it; "shared": submitted to the
    #: long-lived RayCluster ``<name>`` (``clusterSelector``), so what the job deploys keeps serving
    cluster: Literal["own", "shared"] = "own"


class VMConfig(StrictModel):
    """The Ray cluster launcher's ``provider: local`` (on-premise VMs reachable over SSH)."""

    head_ip: str = "10.0.0.10"
    worker_ips: list[str] = Field(default_factory=lambda: ["10.0.0.11", "10.0.0.12"])
    ssh_user: str = "ubuntu"
    ssh_private_key: str = "~/.ssh/id_rsa"
    setup_commands: list[str] = Field(default_factory=lambda: [
        "python3 -m venv ~/rayapp-venv", "~/rayapp-venv/bin/pip install torch==2.13.0",
        "cd ~/rayapp && ~/rayapp-venv/bin/pip install -e ."])


class KubeConfig(StrictModel):
    """Everything the generated manifests share (``cluster/kuberay.yaml``)."""

    name: str = "rayapp"
    namespace: str = "rayapp"
    #: an image with rayapp installed at ``/opt/rayapp`` (``cluster/Dockerfile``)
    image: str = "rayapp:0.1.0"
    gpu_image: str = "rayapp:0.1.0-gpu"
    ray_version: str = "2.60.0"
    head_cpus: int = Field(default=4, ge=1)
    head_memory: str = "16Gi"
    workers: list[WorkerGroup] = Field(default_factory=lambda: [
        WorkerGroup(name="cpu", replicas=2, min_replicas=1, max_replicas=8, cpus=8, memory="32Gi"),
        WorkerGroup(name="gpu", replicas=0, min_replicas=0, max_replicas=4, cpus=8, memory="64Gi", gpus=1)])
    autoscaling: bool = True
    idle_timeout_s: int = Field(default=120, ge=0)
    #: Ray token authentication (Ray 2.60's default), ``authOptions``: the token is the Secret's
    #: ``auth_token`` key; none: KubeRay's default (it makes a Secret per cluster)
    auth_token_secret: Optional[str] = "rayapp-ray-token"
    #: GCS fault tolerance: an external Redis (``redis:6379``) and the Secret holding its password
    redis_address: Optional[str] = None
    redis_password_secret: str = "rayapp-redis"
    #: shared storage every pod mounts: RAYAPP_HOME (corpora, indexes, models) and checkpoints
    shared_pvc: str = "rayapp-shared"
    shared_mount: str = "/mnt/rayapp"
    package_dir: str = "/opt/rayapp"
    jobs: dict[str, JobSpec] = Field(default_factory=lambda: {
        "demo": JobSpec(module="demo", config="configs/demo.yaml", active_deadline_s=3600),
        "build-corpus": JobSpec(module="build_corpus", config="configs/build_corpus.yaml"),
        "build-pairs": JobSpec(module="build_pairs", config="configs/build_pairs.yaml"),
        "train-embedder": JobSpec(module="train_embedder", config="configs/train_embedder.yaml"),
        "train-reranker": JobSpec(module="train_reranker", config="configs/train_reranker.yaml"),
        "train-lear": JobSpec(module="train_lear", config="configs/train_lear_qwen1.5b.yaml", workers="gpu",
                              active_deadline_s=24 * 3600),
        "train-seer": JobSpec(module="train_seer", config="configs/train_seer_qwen1.5b.yaml", workers="gpu",
                              active_deadline_s=24 * 3600),
        "train-rec": JobSpec(module="train_rec", config="configs/train_rec.yaml"),
        "bench-serve": JobSpec(module="bench_serve", config="configs/bench_serve.yaml", active_deadline_s=3600),
        "pipeline": JobSpec(module="pipeline", config="configs/pipeline.yaml", active_deadline_s=12 * 3600,
                            cluster="shared"),
    })
    serve_config: Path = Path("configs/serve_app.yaml")
    vm: VMConfig = Field(default_factory=VMConfig)
    out_dir: Path = Path("cluster")


def job_entrypoint_module(entrypoint: str) -> Optional[str]:
    """The module of a ``python -m <module> ...`` entrypoint."""
    parts = entrypoint.split()
    return parts[parts.index("-m") + 1] if "-m" in parts and parts.index("-m") + 1 < len(parts) else None


# ------------------------------------------------------------------------------------------ pods
def _env(cfg: KubeConfig) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": "RAYAPP_HOME", "value": f"{cfg.shared_mount}/home"},
                                 {"name": "RAYAPP_DATA_DIR", "value": f"{cfg.shared_mount}/data"}]
    return env


def _pod(cfg: KubeConfig, name: str, cpus: int, memory: str, gpus: int, head: bool) -> dict[str, Any]:
    limits: dict[str, Any] = {"cpu": str(cpus), "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    ports = [{"name": "metrics", "containerPort": METRICS_PORT}]
    if head:
        ports += [{"name": "gcs", "containerPort": 6379}, {"name": "dashboard", "containerPort": 8265},
                  {"name": "client", "containerPort": 10001}, {"name": "serve", "containerPort": 8000}]
    container = {
        "name": name, "image": cfg.gpu_image if gpus else cfg.image, "env": _env(cfg),
        "resources": {"requests": dict(limits), "limits": limits}, "ports": ports,
        "volumeMounts": [{"name": "shared", "mountPath": cfg.shared_mount}],
        "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "ray stop"]}}},
    }
    spec: dict[str, Any] = {"containers": [container],
                            "volumes": [{"name": "shared", "persistentVolumeClaim": {"claimName": cfg.shared_pvc}}]}
    if gpus:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {"metadata": {"labels": {"app.kubernetes.io/name": cfg.name}}, "spec": spec}


def _cluster_spec(cfg: KubeConfig, workers: str = "all", redis: bool = False) -> dict[str, Any]:
    groups = [g for g in cfg.workers if workers == "all" or (workers == "gpu" and g.gpus > 0)]
    spec: dict[str, Any] = {
        "rayVersion": cfg.ray_version,
        "enableInTreeAutoscaling": cfg.autoscaling,
        "headGroupSpec": {
            # num-cpus 0: the head schedules no work, so losing a worker never takes the GCS with it
            "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0", "metrics-export-port": str(METRICS_PORT)},
            "template": _pod(cfg, "ray-head", cfg.head_cpus, cfg.head_memory, 0, head=True),
        },
        "workerGroupSpecs": [{
            "groupName": g.name, "replicas": g.replicas, "minReplicas": g.min_replicas, "maxReplicas": g.max_replicas,
            "rayStartParams": {"metrics-export-port": str(METRICS_PORT), **({"num-gpus": str(g.gpus)} if g.gpus else {})},
            "template": _pod(cfg, "ray-worker", g.cpus, g.memory, g.gpus, head=False),
        } for g in groups],
    }
    if cfg.autoscaling:
        spec["autoscalerOptions"] = {"upscalingMode": "Default", "idleTimeoutSeconds": cfg.idle_timeout_s}
    if cfg.auth_token_secret:  # KubeRay wires the token (Secret key auth_token) into every Ray pod
        spec["authOptions"] = {"mode": "token", "secretName": cfg.auth_token_secret}
    if redis:
        spec["gcsFaultToleranceOptions"] = {
            "redisAddress": cfg.redis_address or "redis:6379",
            "redisPassword": {"valueFrom": {"secretKeyRef": {"name": cfg.redis_password_secret, "key": "password"}}},
        }
    return spec


def _meta(cfg: KubeConfig, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": cfg.namespace, "labels": {"app.kubernetes.io/part-of": cfg.name}}


def _runtime_env(cfg: KubeConfig) -> str:
    """The job's runtime_env: the package is the image's (installed at ``package_dir``, the working
    directory of every Ray process), so nothing is uploaded. A ``working_dir`` upload made the
    training driver die in torch's oneMKL loader in the multi-host tests."""
    return yaml.safe_dump({"env_vars": {"PYTHONPATH": cfg.package_dir, "RAYAPP_HOME": f"{cfg.shared_mount}/home",
                                        "RAYAPP_DATA_DIR": f"{cfg.shared_mount}/data"}}, sort_keys=False)


def build_manifests(cfg: KubeConfig, repo: Path) -> dict[str, Any]:
    """``{relative path: document}`` for every generated file (YAML documents, as dicts)."""
    serve_cfg = yaml.safe_load((repo / cfg.serve_config).read_text(encoding="utf-8"))
    serve_cfg["http_options"] = {**serve_cfg.get("http_options", {}), "host": "0.0.0.0"}  # reachable in the pod
    out: dict[str, Any] = {}
    out["k8s/raycluster.yaml"] = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": _meta(cfg, cfg.name),
                                  "spec": _cluster_spec(cfg)}
    out["k8s/raycluster-gcs-ft.yaml"] = {"apiVersion": "ray.io/v1", "kind": "RayCluster",
                                         "metadata": _meta(cfg, f"{cfg.name}-ft"),
                                         "spec": _cluster_spec(cfg, redis=True)}
    out["k8s/rayservice.yaml"] = {
        "apiVersion": "ray.io/v1", "kind": "RayService", "metadata": _meta(cfg, f"{cfg.name}-serve"),
        "spec": {"serveConfigV2": yaml.safe_dump(serve_cfg, sort_keys=False),
                 "rayClusterConfig": _cluster_spec(cfg, redis=cfg.redis_address is not None)}}
    for name, job in cfg.jobs.items():
        spec = {"entrypoint": f"python -m jobs.{job.module} --config {job.config}",
                "runtimeEnvYAML": _runtime_env(cfg), "activeDeadlineSeconds": job.active_deadline_s}
        if job.cluster == "shared":  # KubeRay refuses shutdownAfterJobFinishes with a clusterSelector
            spec["clusterSelector"] = {"ray.io/cluster": cfg.name}
        else:
            spec.update(shutdownAfterJobFinishes=True, ttlSecondsAfterFinished=job.ttl_after_finished_s,
                        rayClusterSpec=_cluster_spec(cfg, workers=job.workers))
        out[f"k8s/rayjob-{name}.yaml"] = {"apiVersion": "ray.io/v1", "kind": "RayJob",
                                          "metadata": _meta(cfg, f"{cfg.name}-{name}"), "spec": spec}
    out["k8s/podmonitor.yaml"] = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": _meta(cfg, f"{cfg.name}-ray"),
        "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": cfg.name}},
                 "namespaceSelector": {"matchNames": [cfg.namespace]},
                 "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}]}}
    vm = cfg.vm
    out["vm/cluster.yaml"] = {
        "cluster_name": cfg.name,
        "provider": {"type": "local", "head_ip": vm.head_ip, "worker_ips": vm.worker_ips},
        "auth": {"ssh_user": vm.ssh_user, "ssh_private_key": vm.ssh_private_key},
        "max_workers": len(vm.worker_ips), "upscaling_speed": 1.0, "idle_timeout_minutes": 5,
        "file_mounts": {"~/rayapp": "."},
        "setup_commands": vm.setup_commands,
        "head_start_ray_commands": ["~/rayapp-venv/bin/ray stop",
                                    "~/rayapp-venv/bin/ray start --head --port=6379 --dashboard-host=0.0.0.0 "
                                    f"--metrics-export-port={METRICS_PORT} --autoscaling-config=~/ray_bootstrap_config.yaml"],
        "worker_start_ray_commands": ["~/rayapp-venv/bin/ray stop",
                                      "~/rayapp-venv/bin/ray start --address=$RAY_HEAD_IP:6379 "
                                      f"--metrics-export-port={METRICS_PORT}"],
    }
    return out


_HEADER = "# Generated by `rayapp cluster-manifests --config cluster/kuberay.yaml` from cluster/kuberay.yaml\n" \
          "# and {serve}; edit those, not this file.\n"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (serveConfigV2, runtimeEnvYAML) as literal blocks, readable in review."""


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s,
                                                             style="|" if "\n" in s else None))


def render(cfg: KubeConfig, repo: Path) -> dict[str, str]:
    """The generated files' text, by path relative to ``cfg.out_dir``."""
    header = _HEADER.format(serve=cfg.serve_config)
    return {p: header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False) for p, doc in build_manifests(cfg, repo).items()}


def write_manifests(cfg: KubeConfig, repo: Path) -> list[Path]:
    out = []
    for rel, text in render(cfg, repo).items():
        path = repo / cfg.out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        out.append(path)
    return out


def missing_modules(cfg: KubeConfig) -> list[str]:
    """Job modules of the config that do not exist (an entrypoint that would fail at once)."""
    return [f"jobs.{j.module}" for j in cfg.jobs.values() if importlib.util.find_spec(f"jobs.{j.module}") is None]
