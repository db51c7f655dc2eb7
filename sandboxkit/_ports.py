"""Port readiness: a probe run inside the sandbox, so it needs no tunnel and no tool but sh and grep."""

from __future__ import annotations

#: How long one probe command polls inside the sandbox before the client looks at its deadline again.
PROBE_SLICE = 5.0

#: The probe's first rounds are short: a server that is starting is usually up within them.
_QUICK_ROUNDS = 10

# $1: the port as 4 upper-case hex digits; $2: how many rounds to poll (the first 10 of 0.01 s, then
# 0.1 s). A socket in state 0A (LISTEN) on that local port, IPv4 or IPv6, accepts connections.
_PROBE = (
    'i=0; d=0.01; while [ "$i" -lt "$2" ]; do '
    'grep -qE "^ *[0-9]+: [0-9A-F]+:$1 [0-9A-F]+:[0-9A-F]+ 0A " /proc/net/tcp /proc/net/tcp6 2>/dev/null && exit 0; '
    f'sleep $d; i=$((i+1)); [ "$i" -lt {_QUICK_ROUNDS} ] || d=0.1; done; exit 1'
)


def probe_argv(port: int, seconds: float) -> list[str]:
    """A command that exits 0 once something listens on TCP ``port``, or 1 after about ``seconds``."""
    rounds = _QUICK_ROUNDS + max(1, int(seconds * 10))
    return ["sh", "-c", _PROBE, "sbk-port-probe", f"{port:04X}", str(rounds)]


def check_port(port: object) -> int:
    """``port`` as an int from 1 to 65535, or ValueError saying so."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an int from 1 to 65535, got {port!r}")
    return port
