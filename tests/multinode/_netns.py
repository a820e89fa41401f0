"""Ray "hosts" in Linux network namespaces on one machine: a head and workers with their own
addresses, joined by a bridge in a namespace of its own (no route to the machine's network).

Each host is started with ``ray start`` inside its namespace (``ip netns exec``); cutting a host
takes its link down and kills every process in its namespace, as a lost machine would look.
Needs root and iproute2; :func:`netns_unavailable` says why not when they are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

RAY = str(Path(sys.executable).with_name("ray"))


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def netns_unavailable() -> Optional[str]:
    """None when network namespaces can be made here, else the reason."""
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"rayapp-probe-{os.getpid()}"
    r = _ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"ip netns add failed: {r.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class NetnsCluster:
    """``hosts[0]`` is the head (``10.231.<k>.1``), the others workers; ``cpus`` CPUs each (the head's
    own count in ``head_cpus``). Worker ``i`` offers the custom resource ``host<i>``."""

    def __init__(self, workers: int = 2, cpus: int = 1, head_cpus: int = 1, root: Optional[Path] = None,
                 tag: Optional[int] = None):
        tag = os.getpid() % 10000 if tag is None else tag
        self.tag, self.cpus, self.head_cpus = tag, cpus, head_cpus
        self.subnet = f"10.231.{tag % 250}"
        self.bridge_ns = f"rab{tag}"
        self.hosts = [f"rah{tag}-{i}" for i in range(workers + 1)]
        self.ips = [f"{self.subnet}.{i + 1}" for i in range(workers + 1)]
        self.root = Path(root or f"/tmp/rayapp-netns-{tag}")
        # the venv first on PATH: a job's `python` is the one `ray start` found
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {**os.environ, "PATH": path, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0",
                    "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                    # the GCS declares a silent node dead after ~1.5 s (default: tens of seconds)
                    "RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
                    "RAY_health_check_failure_threshold": "3"}

    @property
    def head_ip(self) -> str:
        return self.ips[0]

    @property
    def address(self) -> str:
        return f"{self.head_ip}:6379"

    def exec(self, host: int, argv: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess:
        """``argv`` inside host ``host``'s namespace."""
        return subprocess.run(["ip", "netns", "exec", self.hosts[host], *argv], env=kw.pop("env", self.env),
                              capture_output=True, text=True, timeout=timeout, **kw)

    def up(self) -> "NetnsCluster":
        _ip("netns", "add", self.bridge_ns)
        _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        _ip("-n", self.bridge_ns, "link", "set", "lo", "up")
        for i, (ns, ip) in enumerate(zip(self.hosts, self.ips)):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("link", "add", f"ra{self.tag}v{i}", "type", "veth", "peer", "name", f"ra{self.tag}p{i}")
            _ip("link", "set", f"ra{self.tag}v{i}", "netns", ns)
            _ip("link", "set", f"ra{self.tag}p{i}", "netns", self.bridge_ns)
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", f"ra{self.tag}v{i}")
            _ip("-n", ns, "link", "set", f"ra{self.tag}v{i}", "up")
            _ip("-n", self.bridge_ns, "link", "set", f"ra{self.tag}p{i}", "master", "br0")
            _ip("-n", self.bridge_ns, "link", "set", f"ra{self.tag}p{i}", "up")
        self.root.mkdir(parents=True, exist_ok=True)
        head = self.exec(0, env=self.host_env(0), argv=[RAY, "start", "--head", f"--node-ip-address={self.head_ip}", "--port=6379",
                             f"--num-cpus={self.head_cpus}", f"--dashboard-host={self.head_ip}",
                             "--dashboard-port=8265", "--disable-usage-stats", f"--temp-dir={self.root}/head"])
        if head.returncode != 0:
            raise RuntimeError(f"ray start --head failed: {head.stderr[-2000:]}")
        for i in range(1, len(self.hosts)):
            w = self.exec(i, [RAY, "start", f"--address={self.address}", f"--node-ip-address={self.ips[i]}",
                              f"--num-cpus={self.cpus}", f"--resources={json.dumps({f'host{i}': 1})}",
                              "--disable-usage-stats"], env=self.host_env(i))
            if w.returncode != 0:
                raise RuntimeError(f"ray start on {self.hosts[i]} failed: {w.stderr[-2000:]}")
        deadline = time.monotonic() + 120
        while self.alive_nodes() < len(self.hosts):
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.alive_nodes()} of {len(self.hosts)} nodes joined")
            time.sleep(1)
        return self

    def alive_nodes(self) -> int:
        out = self.exec(0, [RAY, "status", f"--address={self.address}"], timeout=60).stdout
        active = out.split("Active:", 1)[-1].split("Pending:", 1)[0] if "Active:" in out else ""
        return sum(1 for line in active.splitlines() if "node_" in line)

    def to_json(self) -> str:
        return json.dumps({"workers": len(self.hosts) - 1, "cpus": self.cpus, "head_cpus": self.head_cpus,
                           "tag": self.tag, "root": str(self.root)})

    @classmethod
    def from_json(cls, text: str) -> "NetnsCluster":
        d = json.loads(text)
        return cls(d["workers"], d["cpus"], d["head_cpus"], Path(d["root"]), tag=d["tag"])

    def host_env(self, host: int) -> dict[str, str]:
        """The environment ``ray start`` gets on ``host``: its processes inherit it. gloo (DeepSpeed's
        CPU backend) binds to the host's own link, not the machine's hostname address."""
        return {**self.env, "GLOO_SOCKET_IFNAME": f"ra{self.tag}v{host}"}

    def pids(self, host: int) -> list[int]:
        r = _ip("netns", "pids", self.hosts[host], check=False)
        return [int(p) for p in r.stdout.split()]

    def cut(self, host: int) -> float:
        """Take host ``host`` off the network and kill everything in it; returns the time."""
        _ip("-n", self.bridge_ns, "link", "set", f"ra{self.tag}p{host}", "down", check=False)
        for pid in self.pids(host):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return time.time()

    def down(self) -> None:
        for i in reversed(range(len(self.hosts))):
            for pid in self.pids(i):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(1)
        for ns in [*self.hosts, self.bridge_ns]:
            _ip("netns", "del", ns, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
