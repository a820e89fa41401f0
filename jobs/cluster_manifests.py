"""Generate the KubeRay manifests and the VM cluster-launcher YAML from one config.

    python -m jobs.cluster_manifests --config cluster/kuberay.yaml

Writes cluster/k8s/*.yaml and cluster/vm/cluster.yaml (the RayService embeds configs/serve_app.yaml),
validates each one, and fails naming the file and field when one is invalid.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rayapp._internal.jobs import run_job
from rayapp.cluster import KubeConfig

REPO = Path(__file__).resolve().parents[1]


def _run(cfg: KubeConfig, _path) -> None:
    import yaml

    from rayapp.cluster import ManifestError, missing_modules, validate_launcher, validate_manifest, write_manifests

    if missing_modules(cfg):
        raise ManifestError(f"jobs: no such job module(s) {missing_modules(cfg)}")
    for path in write_manifests(cfg, REPO):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        errs = validate_launcher(doc) if path.parent.name == "vm" else validate_manifest(doc)
        if errs:
            raise ManifestError(f"{path}: " + "; ".join(errs))
        print(f"wrote {path.relative_to(REPO)}")


def main(argv=None) -> int:
    return run_job("rayapp cluster-manifests", KubeConfig, "cluster/kuberay.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
