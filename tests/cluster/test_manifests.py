"""The generated cluster manifests: up to date with their one source, valid field by field against
KubeRay's API types and the Kubernetes models, and naming job modules and configs that exist."""

from pathlib import Path

import pytest
import yaml

from rayapp.cluster import (KubeConfig, build_manifests, missing_modules, render, validate_launcher,
                            validate_manifest)
from rayapp.config import load_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cfg() -> KubeConfig:
    return load_config(KubeConfig, REPO / "cluster" / "kuberay.yaml")


def test_committed_manifests_are_what_the_source_generates(cfg):
    for rel, text in render(cfg, REPO).items():
        path = REPO / cfg.out_dir / rel
        assert path.is_file(), f"{rel} not generated: run python -m jobs.cluster_manifests"
        assert path.read_text(encoding="utf-8") == text, f"{rel} drifted from cluster/kuberay.yaml: regenerate it"


def test_every_manifest_validates(cfg):
    docs = build_manifests(cfg, REPO)
    kinds = sorted({d.get("kind", "launcher") for d in docs.values()})
    assert kinds == ["PodMonitor", "RayCluster", "RayJob", "RayService", "launcher"]
    for rel, doc in docs.items():
        errs = validate_launcher(doc) if rel.startswith("vm/") else validate_manifest(doc)
        assert not errs, (rel, errs)


def test_validator_names_the_bad_field(cfg):
    doc = build_manifests(cfg, REPO)["k8s/raycluster.yaml"]
    doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    doc["spec"]["workerGroupSpecs"][0]["replicas"] = "two"
    doc["spec"]["autoscalerOptions"]["upscalingMode"] = "Fast"
    doc["spec"]["enableAutoscaling"] = True
    assert sorted(validate_manifest(doc)) == [
        "spec.autoscalerOptions.upscalingMode: 'Fast' is not one of ['Default', 'Aggressive', 'Conservative']",
        "spec.enableAutoscaling: unknown field (not in RayClusterSpec)",
        "spec.headGroupSpec.template.spec.containers[0].imagee: unknown field (not in V1Container)",
        "spec.workerGroupSpecs[0].replicas: expected integer, got str",
    ]
    job = build_manifests(cfg, REPO)["k8s/rayjob-demo.yaml"]
    job["spec"]["shutdownAfterJobFinished"] = True
    assert validate_manifest(job) == ["spec.shutdownAfterJobFinished: unknown field (not in RayJobSpec)"]
    vm = build_manifests(cfg, REPO)["vm/cluster.yaml"]
    vm["max_workers"] = "x"
    assert validate_launcher(vm) == ["max_workers: 'x' is not of type 'integer'"]


def test_rayservice_serves_the_serve_deploy_config(cfg):
    svc = build_manifests(cfg, REPO)["k8s/rayservice.yaml"]
    served = yaml.safe_load(svc["spec"]["serveConfigV2"])
    source = yaml.safe_load((REPO / cfg.serve_config).read_text())
    assert served["http_options"]["host"] == "0.0.0.0"  # reachable from the Serve service, not only the pod
    served["http_options"]["host"] = source["http_options"]["host"]
    assert served == source


def test_jobs_name_modules_and_configs_that_exist(cfg):
    assert missing_modules(cfg) == []
    docs = build_manifests(cfg, REPO)
    jobs = {rel: d for rel, d in docs.items() if d.get("kind") == "RayJob"}
    assert len(jobs) == len(cfg.jobs)
    for rel, doc in jobs.items():
        spec = doc["spec"]
        words = spec["entrypoint"].split()
        assert words[:2] == ["python", "-m"] and words[3] == "--config", rel
        assert (REPO / words[4]).is_file(), f"{rel}: config {words[4]} missing"
        assert spec["activeDeadlineSeconds"] > 0
        if "clusterSelector" in spec:  # submitted to the long-lived cluster: neither made nor deleted
            assert spec["clusterSelector"] == {"ray.io/cluster": docs["k8s/raycluster.yaml"]["metadata"]["name"]}
            assert "rayClusterSpec" not in spec and "shutdownAfterJobFinishes" not in spec, rel
        else:
            assert spec["shutdownAfterJobFinishes"] is True and spec["rayClusterSpec"]["headGroupSpec"], rel
        assert yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]["PYTHONPATH"] == cfg.package_dir


def test_cluster_spec_options(cfg):
    docs = build_manifests(cfg, REPO)
    plain, ft = docs["k8s/raycluster.yaml"]["spec"], docs["k8s/raycluster-gcs-ft.yaml"]["spec"]
    assert plain["authOptions"] == {"mode": "token", "secretName": cfg.auth_token_secret}
    assert "gcsFaultToleranceOptions" not in plain and ft["gcsFaultToleranceOptions"]["redisAddress"]
    groups = {g["groupName"]: g for g in plain["workerGroupSpecs"]}
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu["nvidia.com/gpu"] == "1" and "nvidia.com/gpu" not in groups["cpu"]["template"]["spec"]["containers"][0][
        "resources"]["limits"]
    # the pipeline's deploy step rolls the app on the long-lived cluster, so it runs there
    assert "clusterSelector" in docs["k8s/rayjob-pipeline.yaml"]["spec"]
    lear = docs["k8s/rayjob-train-lear.yaml"]["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert [g["groupName"] for g in lear] == ["gpu"]
