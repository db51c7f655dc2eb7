"""Ports (capability PORTS): ``ports=``, ``url``, ``tunnels``, ``wait_for_port``; the URL works from here."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from sandboxkit import Capability, ErrorCode, Sandbox, Tunnel
from sandboxkit_conformance._target import ConformanceTarget, SandboxPool, requires
from sandboxkit_conformance.suite._support import expect_error, unique

__all__ = ["TestPorts"]

#: A one-page web server on port $1 serving $2: python3 where the image has it, else busybox httpd.
SERVE = (
    'mkdir -p /tmp/sbkc-www && cd /tmp/sbkc-www && printf "%s" "$2" > index.html && '
    'if command -v python3 >/dev/null; then exec python3 -m http.server "$1" --bind 0.0.0.0; fi; '
    'exec busybox httpd -f -p "$1"'
)


def start_server(sandbox: Sandbox, port: int, body: str) -> None:
    """Start a web server in the background inside ``sandbox``, then wait until it listens."""
    sandbox.execute(["sh", "-c", f"nohup sh -c '{SERVE}' sh {port} {body} >/tmp/sbkc-www.log 2>&1 &"], timeout=60)
    sandbox.wait_for_port(port, timeout=60)


def fetch(url: str, seconds: float = 30.0) -> str:
    """GET ``url`` from the caller's machine; retried (bounded) while the tunnel comes up."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return str(response.read().decode())
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"GET {url} failed for {seconds:g}s: {exc}") from None
            time.sleep(0.5)


@requires(Capability.PORTS)
class TestPorts:
    """A server in the sandbox answers on ``url(port)`` with a plain HTTP client on the caller's machine."""

    def test_url_reaches_a_server_in_the_sandbox(self, sandboxes: SandboxPool) -> None:
        sandbox = sandboxes.create(ports=[8000, 8080])
        body = unique("page")
        start_server(sandbox, 8000, body)
        tunnels = sandbox.tunnels()
        assert set(tunnels) == {8000, 8080}, f"tunnels() must list every port of ports=, got {tunnels}"
        tunnel = tunnels[8000]
        assert isinstance(tunnel, Tunnel) and tunnel.port == 8000
        assert sandbox.url(8000) == tunnel.url and tunnel.url.startswith(("http://", "https://"))
        assert fetch(sandbox.url(8000)) == body

    def test_a_reconnected_client_finds_the_tunnels(
        self, sandboxes: SandboxPool, conformance: ConformanceTarget
    ) -> None:
        if not conformance.declares(Capability.RECONNECT):
            return
        sandbox = sandboxes.create(ports=[8000])
        again = Sandbox.from_id(sandbox.id, conformance.provider)
        assert again.url(8000) == sandbox.url(8000)

    def test_wait_for_port_times_out_when_nothing_listens(self, sandboxes: SandboxPool) -> None:
        sandbox = sandboxes.create(ports=[8000])
        started = time.monotonic()
        with expect_error(ErrorCode.COMMAND_TIMEOUT, "wait_for_port(8000) with nothing listening"):
            sandbox.wait_for_port(8000, timeout=2)
        assert time.monotonic() - started < 60, "wait_for_port must give up near its timeout"

    def test_a_port_not_exposed_is_invalid(self, sandboxes: SandboxPool) -> None:
        sandbox = sandboxes.create(ports=[8000])
        with expect_error(ErrorCode.INVALID_ARGUMENT, "url(9999) for a port not in ports="):
            sandbox.url(9999)
        for bad in (0, 70000, "80"):
            with expect_error(ErrorCode.INVALID_ARGUMENT, f"url({bad!r})"):
                sandbox.url(bad)  # type: ignore[arg-type]

    def test_ports_with_block_network_are_refused(self, conformance: ConformanceTarget) -> None:
        with expect_error(ErrorCode.INVALID_ARGUMENT, "ports=[8000] with block_network=True"):
            conformance.create(ports=[8000], block_network=True)
