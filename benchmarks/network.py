"""Network-policy figures: HTTPS through a sandbox's egress (an allowed, pass-through domain) vs no policy,
and how long ``set_network`` takes against one bare ``docker exec`` into the same egress.

Both sandboxes reach the same offline test host (``allowed.test`` from
``sandboxkit_conformance.testhosts``): the policy sandbox through its egress, the plain one on the
hosts' network directly. The times are taken inside the sandboxes (no exec overhead), with the
client each gets by default (the policy sandbox's urllib honours its HTTPS_PROXY).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import clients

NAME = "sandboxkit-egress"
#: runs inside a sandbox: ``python3 bench.py https URL N`` (median ms per request, a new
#: connection each) or ``python3 bench.py download URL`` (ms for the whole body)
SCRIPT = r"""
import ssl, statistics, sys, time, urllib.request
kind, url = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile="/tmp/hosts-ca.pem")
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx))
def get():
    with opener.open(url, timeout=60) as r:
        n = 0
        while chunk := r.read(1 << 20):
            n += len(chunk)
        return n
if kind == "https":
    times = []
    for _ in range(int(sys.argv[3])):
        t = time.perf_counter(); get(); times.append(time.perf_counter() - t)
    print(statistics.median(times) * 1000)
else:
    t = time.perf_counter(); n = get(); assert n == 100 << 20, n
    print((time.perf_counter() - t) * 1000)
"""


class SandboxkitEgress(clients.Client):
    """A policy sandbox (allow_domains=["allowed.test"]) and a plain one, both next to the test hosts."""

    name = NAME

    def __init__(self, run_id: str) -> None:
        os.environ["SANDBOXKIT_LABELS"] = f"bench={run_id}"
        import docker
        from sandboxkit_conformance.testhosts import network_hosts

        import sandboxkit

        self.sk = sandboxkit
        self.docker = docker.from_env()
        self.stack = contextlib.ExitStack()
        self.hosts = self.stack.enter_context(network_hosts(self.docker, {clients.RUN_LABEL_KEY: run_id}))
        self.boxes: dict[bool, Any] = {}
        self.flips = 0

    def setup(self) -> None:
        policy = self.sk.NetworkPolicy(allow_domains=[self.hosts.allowed])
        self.boxes[True] = self.sk.Sandbox.create(
            image=clients.IMAGE,
            timeout=clients.LIFETIME,
            network=policy,
            provider_options={"egress_network": self.hosts.network},
        )
        plain = self.sk.Sandbox.create(image=clients.IMAGE, timeout=clients.LIFETIME)
        self.docker.networks.get(self.hosts.network).connect(plain.id)
        self.boxes[False] = plain
        for sandbox in self.boxes.values():
            sandbox.write_file("/tmp/bench.py", SCRIPT)
            sandbox.write_file("/tmp/hosts-ca.pem", self.hosts.ca_pem)

    def teardown(self) -> None:
        for sandbox in self.boxes.values():
            sandbox.close()
        self.stack.close()

    def measure(self, through_egress: bool, *args: str) -> float:
        result = self.boxes[through_egress].execute(["python3", "/tmp/bench.py", *args], timeout=600, check=True)
        return float(result.stdout.strip()) / 1000

    def set_network(self) -> float:
        """One runtime update, alternating a names-only policy and one with a CIDR (iptables each time)."""
        assert True in self.boxes
        self.flips += 1
        cidrs = [f"{self.hosts.denied_ip}/32"] if self.flips % 2 else []
        policy = self.sk.NetworkPolicy(allow_domains=[self.hosts.allowed], allow_cidrs=cidrs)
        started = time.perf_counter()
        self.boxes[True].set_network(policy)
        return time.perf_counter() - started

    def bare_exec(self) -> float:
        """``docker exec true`` into the policy sandbox's egress (docker-py, the floor of any update by exec)."""
        token = self.docker.containers.get(self.boxes[True].id).labels["sandboxkit.egress"]
        egress = self.docker.containers.get(f"sandboxkit-egress-{token}")
        started = time.perf_counter()
        egress.exec_run(["true"])
        return time.perf_counter() - started

    # the warm-up calls these on every contender
    def exec_true(self) -> float:
        return 0.0

    def upload(self, data: bytes, host_path: Path) -> float:
        return 0.0

    def download(self, size: int) -> float:
        return 0.0


BENCH: SandboxkitEgress | None = None


def make(run_id: str) -> SandboxkitEgress:
    global BENCH
    BENCH = SandboxkitEgress(run_id)
    return BENCH


def https(client: clients.Client) -> float:
    assert BENCH is not None
    return BENCH.measure(client.name == NAME, "https", f"https://{BENCH.hosts.allowed}/", "20")


def download(client: clients.Client) -> float:
    assert BENCH is not None
    return BENCH.measure(client.name == NAME, "download", f"https://{BENCH.hosts.allowed}/bytes/{100 << 20}")


def set_network(client: clients.Client) -> float:
    assert BENCH is not None
    return BENCH.set_network() if client.name == NAME else BENCH.bare_exec()


__all__ = ["NAME", "SandboxkitEgress", "download", "https", "make", "set_network"]
