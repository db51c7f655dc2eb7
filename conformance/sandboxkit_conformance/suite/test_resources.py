"""Resources, each behind its capability: cpu and memory limits, GPUs, network blocking, volumes, secrets."""

from __future__ import annotations

import re
import secrets
import shlex
import socket
from typing import Any

import pytest

from sandboxkit import Capability, ErrorCode, Sandbox, SandboxError
from sandboxkit_conformance._target import ConformanceTarget, MakeSecret, MakeVolume, SandboxPool, requires
from sandboxkit_conformance.suite._support import assert_nothing_left, expect_error, probe_labels, unique, wait_for

__all__ = ["TestCpuLimit", "TestGpu", "TestMemoryLimit", "TestNetworkBlock", "TestSecrets", "TestVolumes"]

#: Two busy loops for ``seconds``, then the CPU time they got (``times``: children's user and system).
BUSY_LOOPS = "l() {{ while :; do :; done; }}; l & a=$!; l & b=$!; sleep {seconds}; kill $a $b; wait; times"
#: Allocate and touch ``mib`` MiB: python3 where the image has it, else a pipe that buffers it all.
ALLOCATE = (
    "if command -v python3 >/dev/null; then exec python3 -c 'b = b\"x\" * ({mib} << 20); print(len(b))'; fi; "
    "head -c $(({mib} << 20)) /dev/zero | tail -c $(({mib} << 20)) | wc -c"
)


def _cpu_seconds(times_output: str) -> float:
    values = [int(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m\s*([\d.]+)s", times_output)]
    if len(values) != 4:
        pytest.fail(f"cannot read the shell's `times` output: {times_output!r}")
    return values[2] + values[3]  # the children's user + system time


@requires(Capability.RESOURCE_LIMITS)
class TestCpuLimit:
    """``cpu=`` caps the CPU time a sandbox gets, whatever it runs."""

    def test_cpu_limit_caps_cpu_time(self, sandboxes: SandboxPool) -> None:
        cpu, seconds = 0.25, 3
        sandbox = sandboxes.create(cpu=cpu)
        result = sandbox.execute(BUSY_LOOPS.format(seconds=seconds), timeout=120)
        used = _cpu_seconds(result.stdout)
        assert used > 0.05, f"the busy loops got no CPU at all ({used:.2f}s); the measurement is broken"
        ceiling = cpu * seconds * 1.5 + 0.4
        assert used <= ceiling, (
            f"two busy loops got {used:.2f}s of CPU in {seconds}s with cpu={cpu}; the limit allows about "
            f"{cpu * seconds:.2f}s (tolerated up to {ceiling:.2f}s)"
        )


@requires(Capability.RESOURCE_LIMITS)
class TestMemoryLimit:
    """``memory_mib=`` is a hard limit; going past it raises RESOURCE_LIMIT_EXCEEDED."""

    def test_memory_limit(self, sandboxes: SandboxPool) -> None:
        sandbox = sandboxes.create(memory_mib=128)
        within = sandbox.execute(ALLOCATE.format(mib=32), timeout=120)
        assert within.exit_code == 0, f"32 MiB under a 128 MiB limit must work: {within.output[-300:]}"
        with expect_error(ErrorCode.RESOURCE_LIMIT_EXCEEDED, "allocating 512 MiB under memory_mib=128") as caught:
            sandbox.execute(ALLOCATE.format(mib=512), timeout=120)
        result = getattr(caught.error, "result", None)
        assert result is not None, "RESOURCE_LIMIT_EXCEEDED carries the command's result (.result)"
        after = sandbox.execute("echo alive", timeout=120)
        assert after.stdout == "alive\n", (
            "the OOM kill belongs to the command that caused it: the next command is not reported as OOM-killed"
        )


@requires(Capability.GPU)
class TestGpu:
    """``gpu=`` attaches the requested type and count; ``nvidia-smi -L`` lists them."""

    def test_requested_gpus_are_visible(
        self, sandboxes: SandboxPool, sandboxkit_gpus: list[str], sandboxkit_gpu_options: dict[str, Any]
    ) -> None:
        assert sandboxkit_gpus, "sandboxkit_gpus must name at least one GPU request"
        for request in sandboxkit_gpus:
            kind, _, count = request.partition(":")
            sandbox = sandboxes.create(gpu=request, **sandboxkit_gpu_options)
            result = sandbox.execute("nvidia-smi -L", timeout=120)
            assert result.exit_code == 0, f"`nvidia-smi -L` failed with gpu={request!r}: {result.output[-300:]}"
            gpus = [line for line in result.stdout.splitlines() if line.startswith("GPU ")]
            assert len(gpus) == int(count or 1), f"gpu={request!r} but nvidia-smi lists {gpus}"
            family = kind.split("-")[0].upper()
            assert all(family in line.upper() for line in gpus), f"gpu={request!r} but nvidia-smi lists {gpus}"


_PY_LISTEN = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", int(sys.argv[1])))
s.listen()
while True:
    c, _ = s.accept()
    open(sys.argv[2], "a").write("hit\\n")
    c.close()
"""
_PY_CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()"
#: Listen on all addresses of the sandbox, port $1; append "hit" to $2 on each connection. python3, else nc.
LISTEN = (
    f'if command -v python3 >/dev/null; then exec python3 -c {shlex.quote(_PY_LISTEN)} "$1" "$2"; fi; '
    'while :; do nc -l -p "$1" </dev/null >/dev/null 2>&1 && echo hit >> "$2"; done'
)
#: Connect to $1 port $2 within 3 s: exit 0 when connected. python3, else nc.
CONNECT = (
    f'if command -v python3 >/dev/null; then exec python3 -c {shlex.quote(_PY_CONNECT)} "$1" "$2"; fi; '
    'nc -w 3 "$1" "$2" </dev/null'
)
#: The sandbox's own non-loopback IPv4 address (empty when it has none).
OWN_ADDRESS = "hostname -i 2>/dev/null | tr ' ' '\\n' | grep -v '^127\\.' | grep -v : | head -n 1"


@requires(Capability.NETWORK_BLOCK)
class TestNetworkBlock:
    """``block_network=True``: the sandbox reaches nothing outside itself (probed against listeners the test owns).

    The check is behaviour, whatever the mechanism (no interface, a firewall, a VM): a listener on this machine's
    loopback and one in another sandbox of the same provider get no connection from the blocked sandbox, while an
    unblocked sandbox does reach the second one (the control that makes the probe mean something).
    """

    @pytest.fixture(scope="class")
    @classmethod
    def blocked(cls, request: pytest.FixtureRequest, conformance: ConformanceTarget) -> Sandbox:
        conformance.gate(request.node)
        sandbox = conformance.create(block_network=True)
        request.addfinalizer(lambda: conformance.close(sandbox))
        if sandbox.execute("command -v python3 || command -v nc").exit_code != 0:
            pytest.skip("the image has neither python3 nor nc to probe the network with")
        return sandbox

    def test_no_connection_to_this_machines_loopback(self, blocked: Sandbox) -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            listener.settimeout(0.5)
            port = listener.getsockname()[1]
            probe = blocked.execute(["sh", "-c", CONNECT, "sh", "127.0.0.1", str(port)], timeout=60)
            try:
                listener.accept()[0].close()
                reached = True
            except TimeoutError:
                reached = False
        assert not reached, "a network-blocked sandbox connected to a listener on the host's loopback"
        assert probe.exit_code != 0, "the connection attempt from a network-blocked sandbox must fail"

    def test_no_connection_to_another_sandbox(self, blocked: Sandbox, sandboxes: SandboxPool) -> None:
        peer, control = sandboxes.create(), sandboxes.create()
        address = peer.execute(OWN_ADDRESS).stdout.strip()
        if not address:
            pytest.skip("an unblocked sandbox of this provider has no non-loopback IPv4 address to listen on")
        port, hits = "47321", f"/tmp/{unique('hits')}"
        for sandbox in (peer, control):
            if sandbox.execute("command -v python3 || command -v nc").exit_code != 0:
                pytest.skip("the image has neither python3 nor nc to probe the network with")
        peer.execute(f"nohup sh -c {shlex.quote(LISTEN)} sh {port} {hits} >/dev/null 2>&1 &")
        reached = wait_for(
            lambda: control.execute(["sh", "-c", CONNECT, "sh", address, port], timeout=60).exit_code == 0, 20, 1.0
        )
        if not reached:
            pytest.skip(f"sandboxes of this provider cannot reach one another ({address}:{port}): nothing to compare")
        before = peer.execute(f"cat {hits} 2>/dev/null | wc -l").stdout.strip()
        probe = blocked.execute(["sh", "-c", CONNECT, "sh", address, port], timeout=60)
        after = peer.execute(f"cat {hits} 2>/dev/null | wc -l").stdout.strip()
        where = f"another sandbox's listener at {address}:{port}"
        assert after == before, f"a network-blocked sandbox connected to {where} (hits {before} -> {after})"
        assert probe.exit_code != 0, f"connecting to {where} from a network-blocked sandbox must fail"


@requires(Capability.VOLUMES)
class TestVolumes:
    """``volumes=``: a named volume outlives the sandbox; a missing one is VOLUME_ERROR."""

    def test_data_persists_across_sandboxes(self, sandboxkit_make_volume: MakeVolume, sandboxes: SandboxPool) -> None:
        # the volume fixture comes first: set up first, torn down last, once no sandbox uses the volume
        volume = sandboxkit_make_volume()
        first = sandboxes.create(volumes={"/sbkc-data": volume})
        first.execute("echo persisted > /sbkc-data/by-command.txt", check=True)
        first.write_file("/sbkc-data/by-api.bin", b"\x00api")
        first.close()
        second = sandboxes.create(volumes={"/sbkc-data": volume})
        assert second.read_file("/sbkc-data/by-command.txt") == b"persisted\n"
        assert second.execute("cat /sbkc-data/by-api.bin").stdout_bytes == b"\x00api"

    def test_missing_volume_is_volume_error(self, conformance: ConformanceTarget) -> None:
        labels, name = probe_labels(), unique("sbkc-no-such-volume")
        with expect_error(ErrorCode.VOLUME_ERROR, "a volume that does not exist") as caught:
            conformance.create(volumes={"/sbkc-data": name}, labels=labels)
        assert name in str(caught.error), "the message names the volume"
        assert_nothing_left(conformance, labels, "a create failed on a missing volume")


@requires(Capability.SECRETS)
class TestSecrets:
    """``secrets=``: named secrets reach commands as env vars and never show in errors or repr."""

    def test_secret_values_reach_commands(self, sandboxkit_make_secret: MakeSecret, sandboxes: SandboxPool) -> None:
        value = f"sbkc-{secrets.token_hex(12)}"
        name = sandboxkit_make_secret({"SBKC_SECRET_TOKEN": value, "SBKC_SECRET_OTHER": "second value"})
        sandbox = sandboxes.create(secrets=[name])
        assert sandbox.execute('printf %s "$SBKC_SECRET_TOKEN"').stdout == value
        assert sandbox.execute(["sh", "-c", 'printf "%s\\n" "$SBKC_SECRET_OTHER"']).stdout == "second value\n"
        assert value not in repr(sandbox), "a secret value must never show in repr"
        with pytest.raises(SandboxError) as failed:
            sandbox.execute("exit 9", check=True)
        assert value not in str(failed.value) and value not in repr(failed.value)

    def test_missing_secret_fails_clearly(self, conformance: ConformanceTarget) -> None:
        labels, name = probe_labels(), unique("sbkc-no-such-secret")
        with pytest.raises(SandboxError) as caught:
            conformance.create(secrets=[name], labels=labels)
        assert name in str(caught.value), f"the error must name the missing secret: {caught.value}"
        assert caught.value.code != ErrorCode.PROVIDER_UNAVAILABLE, "a missing secret is not an outage"
        assert_nothing_left(conformance, labels, "a create failed on a missing secret")
