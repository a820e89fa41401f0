"""Structural validation of the generated manifests, field by field.

- KubeRay kinds (``ray.io/v1`` RayCluster, RayJob, RayService): their spec structs come from
  ``kuberay_schema.json``, a field table taken from KubeRay's Go API types (``ray-operator/apis/ray/v1``;
  the file names the commit). Kubernetes types inside them, such as pod templates and resources,
  are checked against the official ``kubernetes`` Python client's models.
- ``PodMonitor`` (Prometheus operator): a small hand-kept field table of the fields rayapp uses.
- The Ray cluster launcher YAML: Ray's own ``ray/autoscaler/ray-schema.json`` (jsonschema).

Every error names the path of the offending field (``spec.headGroupSpec.template.spec.containers[0].imagee:
unknown field``).
"""

from __future__ import annotations

import json
import re
from importlib.resources import files
from typing import Any

__all__ = ["validate_manifest", "validate_launcher", "kuberay_schema", "ManifestError"]


class ManifestError(ValueError):
    pass


def kuberay_schema() -> dict[str, Any]:
    return json.loads(files("rayapp.cluster").joinpath("kuberay_schema.json").read_text(encoding="utf-8"))


_PODMONITOR = {  # monitoring.coreos.com/v1 PodMonitorSpec, the fields rayapp writes and their siblings
    "PodMonitorSpec": {"selector": {"k8s": "meta/v1.LabelSelector"}, "namespaceSelector": {"ref": "NamespaceSelector"},
                       "podMetricsEndpoints": {"list": {"ref": "PodMetricsEndpoint"}}, "jobLabel": "string",
                       "podTargetLabels": {"list": "string"}, "sampleLimit": "integer"},
    "NamespaceSelector": {"any": "boolean", "matchNames": {"list": "string"}},
    "PodMetricsEndpoint": {"port": "string", "portNumber": "integer", "path": "string", "interval": "string",
                           "scrapeTimeout": "string", "scheme": "string", "honorLabels": "boolean",
                           "params": {"map": {"list": "string"}}, "relabelings": {"list": "any"},
                           "metricRelabelings": {"list": "any"}},
}


def _k8s_class(name: str):
    import kubernetes.client as k

    cls = getattr(k, name, None)
    if cls is None:
        raise ManifestError(f"kubernetes client has no model {name}")
    return cls


_K8S_ALIASES = {"resource.Quantity": "quantity", "intstr.IntOrString": "intorstring", "meta/v1.Duration": "str",
                "meta/v1.Time": "str", "core/v1.PullPolicy": "str", "core/v1.ServiceType": "str"}  # string types


def _k8s_model_name(ref: str) -> str:
    if ref in _K8S_ALIASES:
        return _K8S_ALIASES[ref]
    group, name = ref.split(".", 1)
    version = group.split("/")[-1]  # core/v1 -> v1, batch/v1 -> v1
    return version.capitalize() + name


def _check_k8s(value: Any, t: str, path: str, errs: list[str]) -> None:
    """``value`` against a kubernetes-client type string (``V1PodSpec``, ``List[V1Container]``, ``str``)."""
    m = re.fullmatch(r"List\[(.+)\]", t)
    if m:
        if not isinstance(value, list):
            errs.append(f"{path}: expected a list")
            return
        for i, v in enumerate(value):
            _check_k8s(v, m.group(1), f"{path}[{i}]", errs)
        return
    m = re.fullmatch(r"Dict\[str, (.+)\]", t)
    if m:
        if not isinstance(value, dict):
            errs.append(f"{path}: expected a mapping")
            return
        for k, v in value.items():
            _check_k8s(v, m.group(1), f"{path}.{k}", errs)
        return
    scalar = {"str": str, "int": int, "bool": bool, "float": (int, float)}
    if t in scalar:
        if not isinstance(value, scalar[t]) or (t == "int" and isinstance(value, bool)):
            errs.append(f"{path}: expected {t}, got {type(value).__name__}")
        return
    if t in ("quantity", "intorstring"):
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            errs.append(f"{path}: expected a quantity (string or number)")
        return
    if t in ("object", "datetime", "date"):
        return
    cls = _k8s_class(t)
    if not isinstance(value, dict):
        errs.append(f"{path}: expected a {t} mapping")
        return
    by_json = {j: p for p, j in cls.attribute_map.items()}
    for key, v in value.items():
        if key not in by_json:
            errs.append(f"{path}.{key}: unknown field (not in {t})")
            continue
        sub = cls.openapi_types[by_json[key]]
        # the client models quantities and int-or-strings as str / object: accept numbers there too
        if sub == "str" and isinstance(v, (int, float)) and not isinstance(v, bool) and key in _NUMERIC_OK:
            continue
        _check_k8s(v, sub, f"{path}.{key}", errs)


_NUMERIC_OK = {"cpu", "memory", "nvidia.com/gpu", "port", "targetPort"}


def _check(value: Any, t: Any, path: str, errs: list[str], schema: dict[str, Any]) -> None:
    if t == "any":
        return
    if isinstance(t, str):
        ok = {"string": isinstance(value, str), "boolean": isinstance(value, bool),
              "integer": isinstance(value, int) and not isinstance(value, bool),
              "number": isinstance(value, (int, float)) and not isinstance(value, bool)}.get(t)
        if ok is None:
            raise ManifestError(f"schema: unknown field type {t!r} at {path}")
        if not ok:
            errs.append(f"{path}: expected {t}, got {type(value).__name__}")
        return
    if "enum" in t:
        allowed = schema["enums"][t["enum"]]
        if value not in allowed:
            errs.append(f"{path}: {value!r} is not one of {allowed}")
        return
    if "list" in t:
        if not isinstance(value, list):
            errs.append(f"{path}: expected a list")
            return
        for i, v in enumerate(value):
            _check(v, t["list"], f"{path}[{i}]", errs, schema)
        return
    if "map" in t:
        if not isinstance(value, dict):
            errs.append(f"{path}: expected a mapping")
            return
        for k, v in value.items():
            _check(v, t["map"], f"{path}.{k}", errs, schema)
        return
    if "k8s" in t:
        _check_k8s(value, _k8s_model_name(t["k8s"]), path, errs)
        return
    fields = schema["types"][t["ref"]]
    if not isinstance(value, dict):
        errs.append(f"{path}: expected a {t['ref']} mapping")
        return
    for key, v in value.items():
        if key not in fields:
            errs.append(f"{path}.{key}: unknown field (not in {t['ref']})")
        else:
            _check(v, fields[key], f"{path}.{key}", errs, schema)


def validate_manifest(doc: dict[str, Any]) -> list[str]:
    """Errors of one manifest (empty when it is valid)."""
    errs: list[str] = []
    kind, api = doc.get("kind"), doc.get("apiVersion")
    if set(doc) - {"apiVersion", "kind", "metadata", "spec"}:
        errs += [f"{k}: unknown top-level field" for k in sorted(set(doc) - {"apiVersion", "kind", "metadata", "spec"})]
    _check_k8s(doc.get("metadata", {}), "V1ObjectMeta", "metadata", errs)
    if api == "ray.io/v1":
        schema = kuberay_schema()
        if kind not in schema["kinds"]:
            return errs + [f"kind: {kind!r} is not a KubeRay kind ({sorted(schema['kinds'])})"]
        _check(doc.get("spec", {}), {"ref": schema["kinds"][kind]}, "spec", errs, schema)
    elif api == "monitoring.coreos.com/v1" and kind == "PodMonitor":
        _check(doc.get("spec", {}), {"ref": "PodMonitorSpec"}, "spec", errs, {"types": _PODMONITOR, "enums": {}})
    else:
        errs.append(f"apiVersion/kind: {api}/{kind} is not a kind rayapp generates")
    return errs


def validate_launcher(doc: dict[str, Any]) -> list[str]:
    """Errors of a Ray cluster-launcher YAML against Ray's ``ray-schema.json``."""
    import jsonschema
    import ray.autoscaler

    schema = json.loads((files(ray.autoscaler) / "ray-schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in validator.iter_errors(doc)]
