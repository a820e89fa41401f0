"""Real multi-host tests on one machine: a Ray head and two worker hosts in their own network
namespaces (``ray start`` in each), jobs sent with ``ray job submit``, and a host cut off mid-serve.
Skipped, with the reason, where namespaces cannot be made (not root, no iproute2)."""

import json
import subprocess
from pathlib import Path

import pytest

from tests.multinode._netns import RAY, NetnsCluster, netns_unavailable

pytestmark = pytest.mark.multinode
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def netns_cluster():
    """A fresh three-host cluster per test: the cut tests leave theirs one host short."""
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"network namespaces unavailable ({reason}); the ray.cluster_utils tests cover the rest")
    cluster = NetnsCluster(workers=2, cpus=1, head_cpus=1)
    try:
        yield cluster.up()
    finally:
        cluster.down()


def _submit_argv(cluster: NetnsCluster, argv: list[str], *extra: str) -> list[str]:
    # every host has the package installed (as a cluster image would), so no working_dir upload:
    # with one, the training job's driver died in torch's oneMKL loader ("Cannot load libtorch_cpu.so")
    runtime_env = {"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}}
    return [RAY, "job", "submit", f"--address=http://{cluster.head_ip}:8265", *extra,
            f"--runtime-env-json={json.dumps(runtime_env)}", "--", *argv]


def submit(cluster: NetnsCluster, argv: list[str], timeout: float = 900) -> str:
    """``ray job submit`` from the head's namespace; the job's output (the test fails if the job does)."""
    r = cluster.exec(0, _submit_argv(cluster, argv), timeout=timeout, cwd=REPO)
    assert r.returncode == 0, (r.stdout[-4000:], r.stderr[-2000:])
    return r.stdout


def test_three_hosts_with_their_own_addresses(netns_cluster):
    out = submit(netns_cluster, ["python", "-c", "import ray, json; ray.init(); "
                                 "print('NODES', json.dumps(sorted(n['NodeManagerAddress'] for n in ray.nodes() "
                                 "if n['Alive'])))"], timeout=300)
    line = next(ln for ln in out.splitlines() if ln.startswith("NODES "))
    assert json.loads(line[len("NODES "):]) == sorted(netns_cluster.ips)


def test_serving_survives_a_host_cut_off(netns_cluster, smollm2_dir, capsys):
    """Retriever replicas on two hosts; one host is cut (link down, every process killed) under
    load. Requests keep being answered; Serve brings the replica count back on the hosts left."""
    out = submit(netns_cluster, ["python", "-m", "tests.multinode._netns_serve", "--cluster",
                                 netns_cluster.to_json(), "--generator", smollm2_dir])
    result = json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])
    with capsys.disabled():  # the figures, in the test log
        print(f"\nhost cut mid-serve: {result}")
    assert result["cut_host"] in result["replica_ips"] and result["ok_after_cut"] > 0
    assert result["replacement_s"] is not None, result
    assert result["failed_in_last_5s"] == 0, result


def _job_logs(cluster: NetnsCluster, job: str) -> str:
    return cluster.exec(0, [RAY, "job", "logs", f"--address=http://{cluster.head_ip}:8265", job], timeout=60).stdout


def _train_worker_ips(cluster: NetnsCluster) -> list[str]:
    """Node addresses of the live Ray Train workers (Ray's state API, from the head's namespace)."""
    addr = f"--address=http://{cluster.head_ip}:8265"
    actors = json.loads(cluster.exec(0, [RAY, "list", "actors", addr, "--format=json", "--limit=1000",
                                         "--filter", "state=ALIVE"], timeout=60).stdout or "[]")
    nodes = {n["node_id"]: n["node_ip"] for n in json.loads(
        cluster.exec(0, [RAY, "list", "nodes", addr, "--format=json"], timeout=60).stdout or "[]")}
    return sorted(nodes[a["node_id"]] for a in actors if "TrainWorker" in a.get("class_name", ""))


@pytest.mark.slow  # about 4 minutes: in make test-slow; the serving cut stays in the default run
def test_training_across_hosts_resumes_after_a_host_is_cut(netns_cluster, tiny_lm_dir, capsys):
    """Two DeepSpeed workers (gloo) on two hosts; once a checkpoint is on shared storage, the host of
    one worker is cut off. The job restarts its workers on the hosts left, resumes from that
    checkpoint and finishes; the steps lost and the time to resume are printed."""
    import re
    import time

    import yaml

    from tests.train.test_embedder import write_rows

    work = netns_cluster.root / "train"  # a folder every host reads: the shared checkpoint storage
    work.mkdir(parents=True, exist_ok=True)
    cfg = {"model": tiny_lm_dir, "workers": 2, "cpus_per_worker": 1, "checkpoint_every": 3, "log_every": 1,
           "max_failures": 2, "deepspeed": {"zero_stage": 2}, "output_dir": str(work / "out"),
           "stages": [{"name": "pretrain", "data": str(write_rows(work / "rows.jsonl", n=48)), "steps": 40,
                       "batch_size": 8, "lr": 1e-3, "hard_negatives": 0}]}
    (work / "train.yaml").write_text(yaml.safe_dump(cfg))
    job = f"rayapp-netns-train-{netns_cluster.tag}"
    argv = ["ip", "netns", "exec", netns_cluster.hosts[0],
            *_submit_argv(netns_cluster, ["python", "-m", "jobs.train_embedder", "--config", str(work / "train.yaml")],
                          f"--submission-id={job}")]
    # blocking submit in the background: it exits 0 only if the job succeeds
    proc = subprocess.Popen(argv, env=netns_cluster.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    steps = lambda text: [int(m) for m in re.findall(r"\[pretrain\] step (\d+)/", text)]  # noqa: E731
    deadline = time.monotonic() + 600
    while not [s for s in steps(_job_logs(netns_cluster, job)) if s >= 5]:  # step 3's checkpoint is written
        assert time.monotonic() < deadline, _job_logs(netns_cluster, job)[-3000:]
        time.sleep(1)
    ips = _train_worker_ips(netns_cluster)
    assert len(ips) == 2 and len(set(ips)) == 2, ips  # one worker per host
    host = next(i for i, ip in enumerate(netns_cluster.ips) if i > 0 and ip in ips)
    step_at_cut = max(steps(_job_logs(netns_cluster, job)))
    t_cut = netns_cluster.cut(host)
    resumed_at, t_resumed = None, None
    while proc.poll() is None and time.monotonic() < deadline:
        m = re.findall(r"\[pretrain\] resumed at step (\d+)/", _job_logs(netns_cluster, job))
        if m and t_resumed is None:
            resumed_at, t_resumed = int(m[-1]), time.time()
        time.sleep(1)
    if proc.poll() is None:
        proc.kill()
    out = proc.communicate()[0]
    logs = _job_logs(netns_cluster, job)
    resumes = list(re.finditer(r"\[pretrain\] resumed at step (\d+)/", logs))
    # the last step the first attempt reached: its step lines come before the resume line (the logs
    # read at the cut lag behind the workers)
    before = max(steps(logs[: resumes[-1].start()])) if resumes else step_at_cut
    resumed_at = int(resumes[-1].group(1)) if resumes else resumed_at
    with capsys.disabled():  # the figures, in the test log
        print(f"\nhost cut mid-training: workers on {ips}, cut {netns_cluster.ips[host]} after step {before}; "
              f"resumed from step {resumed_at} ({before - (resumed_at or 0)} steps lost) "
              f"{round(t_resumed - t_cut, 1) if t_resumed else None} s after the cut")
    assert proc.returncode == 0, out[-4000:]
    assert resumed_at is not None and 3 <= resumed_at <= before, (resumed_at, before)  # from a checkpoint
    assert max(steps(logs)) == 40 and (work / "out" / "pretrain" / "manifest.json").is_file()
