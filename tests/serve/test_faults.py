"""A replica killed under load (``ray.kill`` on its actor) is replaced by Serve and requests keep
being answered; the load and kill helpers are the benchmark's own (``rayapp.serve.bench``)."""

import threading

import pytest

from rayapp.config import AppConfig
from rayapp.serve.bench import kill_replica, run_load
from tests.serve.test_timeouts import StuckStage


@pytest.fixture(scope="module")
def faults_url(ray_session, serve_port):
    from ray import serve

    from rayapp.serve._deployments import Ingress

    serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
    cfg = AppConfig.model_validate({"embeddings": {"enabled": False}})
    opts = {"ray_actor_options": {"num_cpus": 0.05}, "num_replicas": 2, "health_check_period_s": 1.0}
    stage = serve.deployment(StuckStage).options(**opts)
    app = Ingress.options(name="Ingress", **opts).bind(
        cfg, stage.options(name="Retriever").bind(0.01, 0.0), stage.options(name="Generator").bind(0.0, 0.0))
    serve.run(app, name="faults", route_prefix="/faults")
    yield f"http://127.0.0.1:{serve_port}/faults"
    serve.delete("faults")


@pytest.mark.parametrize("deployment", ["Retriever", "Ingress"])
def test_killed_replica_is_replaced_and_requests_keep_succeeding(faults_url, deployment):
    out, records = {}, []

    def load():
        records.extend(run_load(faults_url, "retrieve", ["q"], clients=4, duration_s=15))

    loader = threading.Thread(target=load)
    loader.start()
    import time

    time.sleep(2)
    out.update(kill_replica("faults", deployment, timeout_s=120))
    loader.join()
    assert out["replacement_s"] is not None, out  # Serve brought the replica count back
    t_end = max(s + d for s, d, _ in records)
    tail = [c for s, d, c in records if s + d > t_end - 2]
    assert tail and all(c == 200 for c in tail), tail  # answered again after the replacement
    assert sum(c == 200 for _, _, c in records) > 0.5 * len(records)
