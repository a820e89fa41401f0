"""The app deployed the other two ways: from the Serve config YAML in the repo (``serve run``), and
by ``rayapp serve`` (build or reuse the index, deploy, serve until stopped)."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from rayapp.config import DEPLOYMENTS, AppConfig, load_config

REPO = Path(__file__).resolve().parents[2]
SERVE_YAML = REPO / "configs" / "serve_app.yaml"


def wait_ready(url: str, timeout_s: float = 300) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            r = httpx.get(f"{url}/readyz", timeout=10)
            if r.status_code == 200:
                return r
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url}/readyz never answered 200"
        time.sleep(1)


def test_serve_yaml_is_valid_and_names_real_deployments():
    from ray.serve.schema import ServeDeploySchema

    spec = ServeDeploySchema.model_validate(yaml.safe_load(SERVE_YAML.read_text()))
    (app,) = spec.applications
    assert app.import_path == "rayapp.serve:app_builder" and app.args["index_path"] == "latest"
    assert {d.name for d in app.deployments} <= set(DEPLOYMENTS)
    load_config(AppConfig, REPO / app.args["config"])  # the same app config `rayapp serve` uses


def test_app_builder_rejects_bad_arguments(tmp_path):
    from rayapp.serve import app_builder

    with pytest.raises(ValueError, match="unknown argument"):
        app_builder({"index_path": "x", "bogus": 1})
    with pytest.raises(ValueError, match="config 'nope.yaml' not found"):
        app_builder({"index_path": "x", "config": "nope.yaml"})
    with pytest.raises(FileNotFoundError, match="no built index"):
        app_builder({"index_path": "latest", "home": str(tmp_path)})


def test_serve_run_of_the_config_yaml(ray_session, small_index, smollm2_dir, serve_port, tmp_path):
    """``serve run`` of the repo's YAML (its deployments and autoscaling kept), pointed at the test
    index, with an inline app config and its own route prefix."""
    import ray
    from ray import serve

    spec = yaml.safe_load(SERVE_YAML.read_text())
    spec["http_options"]["port"] = serve_port
    app = spec["applications"][0]
    app.update(name="cfgapp", route_prefix="/cfgapp")
    app["args"] = {"index_path": str(small_index.path),
                   "config": {"generator": {"model": smollm2_dir, "max_new_tokens": 8}, "retriever": {"top_k": 2}}}
    path = tmp_path / "serve_app.yaml"
    path.write_text(yaml.safe_dump(spec))
    serve_cli = Path(sys.executable).with_name("serve")
    out = subprocess.run([str(serve_cli), "run", "--non-blocking", "-a", ray.get_runtime_context().gcs_address,
                          str(path)], capture_output=True, text=True, timeout=600, cwd=REPO,
                         env={**os.environ, "RAY_SERVE_LOG_TO_STDERR": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    try:
        url = f"http://127.0.0.1:{serve_port}/cfgapp"
        assert wait_ready(url).json()["stages"] == ["retriever", "generator", "embedder"]
        r = httpx.post(f"{url}/v1/retrieve", json={"question": "temporary directory"}, timeout=120)
        assert r.status_code == 200 and len(r.json()["hits"]) == 2
        from ray.serve.context import _get_global_client

        details = _get_global_client().get_serve_details()["applications"]["cfgapp"]["deployments"]
        auto = details["Generator"]["deployment_config"]["autoscaling_config"]
        assert auto["max_replicas"] == 2 and auto["target_ongoing_requests"] == 4  # from the YAML
        assert details["Ingress"]["deployment_config"]["num_replicas"] == 1
    finally:
        serve.delete("cfgapp")


def test_rayapp_serve_deploys_over_the_built_index_until_stopped(ray_session, home, small_index, smollm2_dir,
                                                                  serve_port, tmp_path):
    import json

    from ray import serve

    from rayapp.config import CorpusConfig, DemoConfig, EmbedConfig
    from rayapp.demo import serve_forever
    from rayapp.serve import APP_NAME
    from tests.conftest import SMALL_MODULES

    cfg = DemoConfig(home=home, corpus=CorpusConfig(modules=SMALL_MODULES), embed=EmbedConfig(batch_size=32),
                     app=AppConfig.model_validate({"generator": {"model": smollm2_dir, "max_new_tokens": 8},
                                                   "http": {"port": serve_port}}),
                     results_dir=tmp_path / "results")
    stop, ready = threading.Event(), []
    worker = threading.Thread(target=serve_forever, args=(cfg, stop, ready.append), daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 300
        while not ready:
            assert worker.is_alive() and time.monotonic() < deadline
            time.sleep(0.5)
        info = ready[0]
        assert info["index_path"] == str(small_index.path)  # reused, not rebuilt
        assert json.loads((tmp_path / "results" / "serve.json").read_text())["url"] == info["url"]
        assert wait_ready(info["url"]).json()["status"] == "ready"
    finally:
        stop.set()
        worker.join(timeout=120)
    assert not worker.is_alive() and APP_NAME not in serve.status().applications


def test_per_deployment_options_reach_serve():
    from rayapp.serve import _options

    cfg = AppConfig.model_validate({"num_cpus_per_replica": 0.5, "deployments": {
        "Generator": {"autoscaling": {"min_replicas": 1, "max_replicas": 3}, "num_gpus": 1, "num_cpus": 2},
        "Retriever": {"num_replicas": 2, "health_check_period_s": 2}}})
    gen, ret, ing = _options(cfg, "Generator"), _options(cfg, "Retriever"), _options(cfg, "Ingress")
    assert gen["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 1} and "num_replicas" not in gen
    assert gen["autoscaling_config"]["max_replicas"] == 3 and gen["logging_config"] == {"encoding": "JSON"}
    assert ret["num_replicas"] == 2 and ret["health_check_period_s"] == 2
    assert ing == {"name": "Ingress", "ray_actor_options": {"num_cpus": 0.5}, "max_ongoing_requests": 64,
                   "logging_config": {"encoding": "JSON"}}
    with pytest.raises(ValueError, match="num_replicas or autoscaling, not both"):
        AppConfig.model_validate({"deployments": {"Generator": {"num_replicas": 2, "autoscaling": {}}}})
    with pytest.raises(ValueError, match="Input should be 'Ingress'"):
        AppConfig.model_validate({"deployments": {"Generatr": {}}})


def test_several_recommender_replicas_need_a_shared_append_log(tmp_path):
    rec = {"model_dir": str(tmp_path)}
    for opts, most in [({"num_replicas": 2}, 2), ({"autoscaling": {"min_replicas": 1, "max_replicas": 3}}, 3)]:
        with pytest.raises(ValueError, match=f"recommender.append_log: the Recommender has up to {most} replicas"):
            AppConfig.model_validate({"recommender": rec, "deployments": {"Recommender": opts}})
        AppConfig.model_validate({"recommender": {**rec, "append_log": str(tmp_path / "a.jsonl")},
                                  "deployments": {"Recommender": opts}})
    AppConfig.model_validate({"recommender": rec, "deployments": {"Recommender": {"num_replicas": 1}}})
    AppConfig.model_validate({"deployments": {"Recommender": {"num_replicas": 2}}})  # no recommender at all
