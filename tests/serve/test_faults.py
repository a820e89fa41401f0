"""A replica killed under load (``ray.kill`` on its actor) is replaced by Serve and requests keep
being answered; the load and kill helpers are the benchmark's own (``rayapp.serve.bench``)."""

import threading

import pytest

from rayapp.config import AppConfig
from rayapp.serve.bench import cpu_per_request, cpu_snapshot, kill_replica, process_role, run_load
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


def test_cpu_per_request_counts_processes_alive_at_both_snapshots():
    before = {1: ("Retriever", 10.0), 2: ("ProxyActor", 5.0), 3: ("Ingress", 1.0), 4: ("raylet", 0.0)}
    after = {1: ("Retriever", 12.0), 2: ("ProxyActor", 6.0), 3: ("Generator", 9.0),  # pid 3 reused
             4: ("raylet", 0.001), 5: ("Ingress", 50.0)}  # pid 5 started in between
    cpu = cpu_per_request(before, after, wall_s=2.0, ok=100)
    assert cpu["ms_per_request"] == {"Retriever": 20.0, "ProxyActor": 10.0}  # raylet: under 0.5% of the total
    assert list(cpu["ms_per_request"]) == ["Retriever", "ProxyActor"]
    assert cpu["total_ms_per_request"] == 30.01 and cpu["cores_busy"] == 1.5


def test_cpu_snapshot_names_serve_processes_by_role(faults_url):
    before = cpu_snapshot()
    records = run_load(faults_url, "retrieve", ["q"], clients=2, duration_s=2)
    cpu = cpu_per_request(before, cpu_snapshot(), 2.0, sum(c == 200 for _, _, c in records))
    assert {"Ingress", "ProxyActor", "driver"} <= set(cpu["ms_per_request"]), cpu
    assert cpu["total_ms_per_request"] >= sum(cpu["ms_per_request"].values()) - 0.1


def test_process_roles_from_command_lines():
    assert process_role(["ray::ServeReplica:rayapp:Retriever"]) == "Retriever"
    assert process_role(["ray::ServeController.listen_for_change"]) == "ServeController"
    assert process_role(["ray::ProxyActor"]) == "ProxyActor"
    assert process_role(["/venv/bin/python", "/venv/lib/ray/dashboard/dashboard.py", "--host=x"]) == "dashboard.py"
    assert process_role(["/venv/lib/ray/core/src/ray/raylet/raylet", "--raylet_socket_name=/tmp/x"]) == "raylet"
