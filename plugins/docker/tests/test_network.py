"""Network policy on Docker, carried out from inside real sandboxes against the tests' own hosts.

The "internet" is two containers on an internal network this module creates (``allowed.test``,
``api.allowed.test``, ``denied.test``); nothing leaves the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from sandboxkit_conformance.testhosts import PROBE, NetworkHosts
from sandboxkit_docker import _egress

import sandboxkit
from sandboxkit import ErrorCode, HeaderInjection, NetworkPolicy, Sandbox, SandboxError
from sandboxkit.secrets import create_secret

pytestmark = pytest.mark.usefixtures("docker_engine")

SECRET_VALUE = "sk-live-9f8e7d6c5b4a"
CA_PATH = "/tmp/testca.pem"


@pytest.fixture(scope="module")
def hosts(sandboxkit_network_hosts: NetworkHosts) -> NetworkHosts:
    return sandboxkit_network_hosts


def _create(hosts: NetworkHosts, policy: NetworkPolicy, **kw: Any) -> Sandbox:
    sb = Sandbox.create(
        image="sandboxkit/base:bookworm",
        network=policy,
        provider_options={"pull": "never", "egress_network": hosts.network},
        timeout=600,
        **kw,
    )
    sb.write_file("/tmp/probe.py", PROBE)
    sb.write_file(CA_PATH, hosts.ca_pem)
    return sb


def probe(sb: Sandbox, *args: str) -> dict[str, Any]:
    r = sb.execute(["python3", "/tmp/probe.py", *args], timeout=60)
    assert r.exit_code == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


def denied_fast(result: dict[str, Any]) -> bool:
    return not result["ok"] and result["seconds"] < 5


@pytest.fixture(scope="module")
def sb(hosts: NetworkHosts) -> Iterator[Sandbox]:
    with _create(hosts, NetworkPolicy(allow_domains=["allowed.test"], upstream_ca=hosts.ca_pem)) as sandbox:
        yield sandbox


@pytest.fixture
def policy(sb: Sandbox, hosts: NetworkHosts) -> Iterator[None]:
    yield
    sb.set_network(NetworkPolicy(allow_domains=["allowed.test"], upstream_ca=hosts.ca_pem))


# ---------------------------------------------------------------- by name
def test_an_allowed_name_is_reachable_through_the_proxy_and_without_it(sb: Sandbox, hosts: NetworkHosts) -> None:
    for kind in ("proxy", "direct"):
        r = probe(sb, kind, "http://allowed.test/x")
        assert r["ok"] and r["body"]["server"] == "allowed", (kind, r)
        r = probe(sb, kind, "https://allowed.test/y", CA_PATH)
        assert r["ok"] and r["body"]["server"] == "allowed", (kind, r)


def test_a_denied_name_fails_fast_every_way(sb: Sandbox, hosts: NetworkHosts) -> None:
    r = probe(sb, "proxy", "http://denied.test/")
    assert r["status"] == 403 and r["seconds"] < 5, r
    assert denied_fast(probe(sb, "proxy", "https://denied.test/", CA_PATH))
    dns = probe(sb, "dns", "denied.test")
    assert denied_fast(dns) and "gaierror" in dns["error"], dns
    assert denied_fast(probe(sb, "direct", "http://denied.test/"))
    # a client that ignores proxies and DNS: raw sockets to the hosts' addresses
    assert denied_fast(probe(sb, "tcp", hosts.denied_ip, "80", "denied.test"))
    assert denied_fast(probe(sb, "tcp", hosts.allowed_ip, "80", "allowed.test"))
    assert denied_fast(probe(sb, "tcp", hosts.allowed_ip, "443", "allowed.test"))
    # a raw client that ignores the proxy variables and names a denied host to the egress itself
    egress = probe(sb, "dns", "allowed.test")["addr"]
    fronted = probe(sb, "tcp", egress, "80", "denied.test")
    assert denied_fast(fronted) and "403 Forbidden" in fronted.get("body", ""), fronted
    # another port of an allowed name
    assert denied_fast(probe(sb, "tcp", "allowed.test", "8080", "allowed.test"))
    # UDP other than DNS, also to the allowed host and to the egress (QUIC's port)
    assert denied_fast(probe(sb, "udp", hosts.denied_ip, "9999"))
    assert denied_fast(probe(sb, "udp", hosts.allowed_ip, "9999"))
    assert denied_fast(probe(sb, "udp", egress, "443"))
    # DNS sent to any other server is answered by the egress, by the policy (no tunnel through the host)
    dns = probe(sb, "dnsq", hosts.denied_ip, "denied.test")
    assert dns["rcode"] == 3 and dns["seconds"] < 5, dns
    assert denied_fast(probe(sb, "tcp6", "fd00::1", "80"))


def test_denied_attempts_are_counted_in_the_network_log(sb: Sandbox, hosts: NetworkHosts) -> None:
    probe(sb, "dns", "log-me.denied.test")
    probe(sb, "tcp", hosts.denied_ip, "81", "x")
    probe(sb, "proxy", "http://allowed.test/logged")
    events = sb.network_log()
    denied = [e for e in events if e.verdict == "denied"]
    assert any(e.host == "log-me.denied.test" for e in denied), events
    assert any(e.address == hosts.denied_ip and e.port == 81 for e in denied), events
    assert any(e.verdict == "allowed" and e.host == "allowed.test" for e in events)


def test_wildcards_match_names_below_only(sb: Sandbox, hosts: NetworkHosts, policy: None) -> None:
    sb.set_network(NetworkPolicy(allow_domains=["*.allowed.test"], upstream_ca=hosts.ca_pem))
    r = probe(sb, "direct", "http://api.allowed.test/")
    assert r["ok"] and r["body"]["server"] == "allowed", r
    assert denied_fast(probe(sb, "direct", "http://allowed.test/"))
    assert probe(sb, "proxy", "http://allowed.test/")["status"] == 403


# ---------------------------------------------------------------- by CIDR, at runtime
def test_cidr_allows_raw_tcp_and_udp(sb: Sandbox, hosts: NetworkHosts, policy: None) -> None:
    sb.set_network(NetworkPolicy(allow_cidrs=[f"{hosts.denied_ip}/32"]))
    r = probe(sb, "tcp", hosts.denied_ip, "80", "denied.test")
    assert r["ok"] and '"denied"' in r["body"], r
    assert probe(sb, "udp", hosts.denied_ip, "9999")["reply"] == "denied:ping"
    assert denied_fast(probe(sb, "tcp", hosts.allowed_ip, "80", "allowed.test"))
    assert denied_fast(probe(sb, "udp", hosts.allowed_ip, "9999"))
    assert denied_fast(probe(sb, "dns", "allowed.test"))  # no names at all now
    sb.set_network(NetworkPolicy(allow_domains=["allowed.test"]))  # the CIDR's UDP rule goes with it
    assert denied_fast(probe(sb, "udp", hosts.denied_ip, "9999"))
    assert denied_fast(probe(sb, "tcp", hosts.denied_ip, "80", "denied.test"))


def test_a_runtime_update_holds_for_the_next_connection(sb: Sandbox, hosts: NetworkHosts, policy: None) -> None:
    assert probe(sb, "direct", "http://allowed.test/")["ok"]
    sb.set_network(NetworkPolicy.deny_all())  # returns once the egress has it in force
    assert denied_fast(probe(sb, "direct", "http://allowed.test/"))
    assert sb.network == NetworkPolicy.deny_all()
    sb.set_network(NetworkPolicy(allow_domains=["denied.test"]))
    assert probe(sb, "direct", "http://denied.test/")["ok"]


def _egress_logs(sb: Sandbox, docker_engine: docker.DockerClient) -> str:
    token = docker_engine.containers.get(sb.id).labels[_egress.TOKEN]
    logs: bytes = docker_engine.containers.get(f"sandboxkit-egress-{token}").logs(stdout=True, stderr=False)
    return logs.decode()


def test_updates_go_to_the_egress_stdin_and_fall_back_to_an_exec(
    sb: Sandbox, hosts: NetworkHosts, policy: None, docker_engine: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    acks = _egress_logs(sb, docker_engine).count("sbk-ack ")
    sb.set_network(NetworkPolicy(allow_domains=["denied.test"]))
    assert _egress_logs(sb, docker_engine).count("sbk-ack ") == acks + 1  # answered on stdout: no exec ran
    assert probe(sb, "direct", "http://denied.test/")["ok"]
    # a line that is not an update (two clients' lines mixed) is answered "garbled"; the agent reads on
    name = f"sandboxkit-egress-{docker_engine.containers.get(sb.id).labels[_egress.TOKEN]}"
    assert _egress.tell(docker_engine.api, name, "not-a-version", {}) is None
    assert "sbk-ack garbled" in _egress_logs(sb, docker_engine)
    sb.set_network(NetworkPolicy(allow_domains=["allowed.test"]))
    assert probe(sb, "direct", "http://allowed.test/")["ok"]
    # no answer on stdin (an egress from before, or a mixed line): the exec path puts the policy in force
    monkeypatch.setattr(_egress, "tell", lambda *args: None)
    sb.set_network(NetworkPolicy(allow_domains=["denied.test"]))
    assert denied_fast(probe(sb, "direct", "http://allowed.test/"))
    assert probe(sb, "direct", "http://denied.test/")["ok"]


#: inside the sandbox: 24 MiB over a CONNECT tunnel, and a request sent in the same packet as its CONNECT
BULK = r"""
import os, socket, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[1])
with urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx)).open(
        "https://allowed.test/bytes/25165824", timeout=60) as r:
    n = 0
    while chunk := r.read(1 << 20):
        n += len(chunk)
proxy = os.environ["HTTP_PROXY"].split("//")[1].rstrip("/").split(":")
s = socket.create_connection((proxy[0], int(proxy[1])), timeout=10)
s.sendall(b"CONNECT allowed.test:80 HTTP/1.1\r\n\r\n"
          b"GET /eager HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
print(n, b'"allowed"' in data)
"""


def test_bulk_and_eager_data_cross_the_tunnel_intact(sb: Sandbox) -> None:
    sb.write_file("/tmp/bulk.py", BULK)
    r = sb.execute(["python3", "/tmp/bulk.py", CA_PATH], timeout=120)
    assert r.exit_code == 0 and r.stdout.split() == [str(24 << 20), "True"], (r.stdout, r.stderr)


def test_the_sandbox_cannot_change_its_route_or_firewall(sb: Sandbox) -> None:
    r = sb.execute("grep CapEff /proc/self/status", user="root")
    assert int(r.stdout.split()[1], 16) & (1 << 12) == 0  # no CAP_NET_ADMIN
    r = sb.execute(
        'python3 -c "import socket,fcntl,struct; s=socket.socket(); '
        "fcntl.ioctl(s.fileno(), 0x890C, b'\\0'*120)\"",  # SIOCDELRT
        user="root",
    )
    assert r.exit_code != 0 and "Operation not permitted" in r.stderr


def test_ipv6_is_off_and_root_cannot_turn_it_on(sb: Sandbox) -> None:
    script = (
        "import json, socket\n"
        "out = {'addresses': open('/proc/net/if_inet6').read() if __import__('os').path.exists('/proc/net/if_inet6')"
        " else ''}\n"
        "for path in ('/proc/sys/net/ipv6/conf/all/disable_ipv6', '/proc/sys/net/ipv6/conf/eth0/disable_ipv6'):\n"
        "    try:\n"
        "        open(path, 'w').write('0')\n"
        "        out[path] = 'written'\n"
        "    except OSError as e:\n"
        "        out[path] = type(e).__name__\n"
        "for kind, target in (('tcp', ('fd00::1', 80)), ('tcp', ('::1', 80)), ('udp', ('fd00::1', 53))):\n"
        "    try:\n"
        "        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM if kind == 'tcp' else socket.SOCK_DGRAM)\n"
        "        s.settimeout(5); s.connect(target); s.send(b'x'); out[kind + str(target)] = 'sent'\n"
        "    except OSError as e:\n"
        "        out[kind + str(target)] = type(e).__name__\n"
        "print(json.dumps(out))\n"
    )
    sb.write_file("/tmp/v6.py", script)
    r = sb.execute(["python3", "/tmp/v6.py"], user="root", timeout=60)
    assert r.exit_code == 0, r.stderr
    found = json.loads(r.stdout.strip().splitlines()[-1])
    assert found.pop("addresses") == "", "the sandbox has an IPv6 address"
    assert set(found.values()) - {"written", "sent"} == set(found.values()), found  # every attempt failed
    assert sb.execute("cat /proc/sys/net/ipv6/conf/all/disable_ipv6").stdout.strip() == "1"


def test_reconnecting_sees_the_policy_and_log(sb: Sandbox) -> None:
    again = Sandbox.from_id(sb.id)
    assert again.network == sb.network
    assert again.network_log()


def test_a_sandbox_cannot_reach_another_sandboxs_egress(sb: Sandbox, hosts: NetworkHosts) -> None:
    with _create(hosts, NetworkPolicy(allow_domains=["denied.test"])) as other:
        other_egress = other.execute("echo $HTTP_PROXY").stdout.strip().removeprefix("http://").split(":")[0]
        mine = sb.execute("echo $HTTP_PROXY").stdout.strip().removeprefix("http://").split(":")[0]
        assert other_egress != mine
        for port in ("3128", "15001", "80", "53"):
            assert denied_fast(probe(sb, "tcp", other_egress, port, "denied.test"))
        # DNS to the other egress is answered by this sandbox's own egress, by this sandbox's policy
        dns = probe(sb, "dnsq", other_egress, "denied.test")
        assert dns["rcode"] == 3 and dns["seconds"] < 5, dns
        dns = probe(sb, "dnsq", other_egress, "allowed.test")
        assert dns["ok"] and dns["addr"] == mine, dns
        # and the other sandbox's policy does not leak into this one
        assert denied_fast(probe(sb, "direct", "http://denied.test/"))
        assert probe(other, "direct", "http://denied.test/")["ok"]


def test_a_sandbox_allowed_the_egress_networks_cannot_reach_another_sandboxs_egress(
    docker_engine: docker.DockerClient, sb: Sandbox, hosts: NetworkHosts
) -> None:
    """The attacker's policy allows the egress network and every sandbox network; it tries as root."""
    token = docker_engine.containers.get(sb.id).labels["sandboxkit.egress"]
    nets = docker_engine.api.inspect_container(f"sandboxkit-egress-{token}")["NetworkSettings"]["Networks"]
    outside = nets[hosts.network]["IPAddress"]
    inside = sb.execute("echo $HTTP_PROXY").stdout.strip().removeprefix("http://").split(":")[0]
    subnet = docker_engine.api.inspect_network(hosts.network)["IPAM"]["Config"][0]["Subnet"]
    with _create(hosts, NetworkPolicy(allow_cidrs=[subnet, "10.203.0.0/16"])) as attacker:
        assert probe(attacker, "tcp", hosts.denied_ip, "80", "denied.test")["ok"]  # the CIDRs work
        for address in (outside, inside):
            for port in ("3128", "15001", "80", "443"):
                r = probe(attacker, "tcp", address, port, "allowed.test")
                assert denied_fast(r), (address, port, r)
            # DNS to the other egress is answered by the attacker's own egress, by the attacker's policy
            dns = probe(attacker, "dnsq", address, "allowed.test")
            assert dns["rcode"] == 3 and dns["seconds"] < 5, dns
    assert probe(sb, "direct", "http://allowed.test/")["ok"]


# ---------------------------------------------------------------- errors and cleanup
def test_bad_policies_are_refused_before_anything_is_created(
    docker_engine: docker.DockerClient,
    hosts: NetworkHosts,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    session_label: str,
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    create_secret("api", {"TOKEN": SECRET_VALUE})

    def ours() -> int:
        """Containers and networks with this session's label: a sandbox, its egress and its network carry it."""
        filters = {"label": session_label}
        return len(docker_engine.api.containers(all=True, filters=filters)) + len(
            docker_engine.api.networks(filters=filters)
        )

    before = ours()
    cases: list[dict[str, Any]] = [
        {"network": {"allow_domains": ["not a domain"]}},
        {"network": {"allow_cidrs": ["10.0.0.0/33"]}},
        {"network": {"allow_cidrs": ["fd00::/8"]}},
        {"network": NetworkPolicy(), "block_network": True},
        {
            "network": NetworkPolicy(
                allow_domains=["allowed.test"],
                inject=[HeaderInjection(domain="allowed.test", secret="api", headers={"X": "$MISSING"})],
            )
        },
        {
            "network": NetworkPolicy(
                allow_domains=["allowed.test"],
                inject=[HeaderInjection(domain="allowed.test", secret="nope", headers={"X": "$TOKEN"})],
            )
        },
    ]
    for options in cases:
        with pytest.raises(SandboxError) as info:
            Sandbox.create(image="sandboxkit/base:bookworm", **options)
        assert info.value.code == ErrorCode.INVALID_ARGUMENT, options
        assert SECRET_VALUE not in str(info.value)
    with pytest.raises(SandboxError) as info:
        Sandbox.create(
            image="sandboxkit/base:bookworm",
            network={
                "allow_domains": ["x.test"],
                "inject": [{"domain": "y.test", "secret": "api", "headers": {"X": "1"}}],
            },
        )
    assert info.value.code == ErrorCode.INVALID_ARGUMENT and "allow_domains" in info.value.message
    with pytest.raises(SandboxError) as info:
        Sandbox.create(
            image="sandboxkit/base:bookworm",
            network=NetworkPolicy(allow_domains=["x.test"]),
            provider_options={"egress_network": "sbk-no-such-network"},
        )
    assert info.value.code == ErrorCode.INVALID_ARGUMENT and "sbk-no-such-network" in info.value.message
    assert ours() == before


def test_set_network_needs_a_policy_sandbox_and_a_valid_policy(sb: Sandbox) -> None:
    with pytest.raises(SandboxError) as info:
        sb.set_network({"allow_cidrs": ["nope"]})  # type: ignore[arg-type]
    assert info.value.code == ErrorCode.INVALID_ARGUMENT
    with pytest.raises(SandboxError) as info:
        sb.set_network(NetworkPolicy(allow_cidrs=["10.9.0.0/24", "2001:db8::/32"]))
    assert info.value.code == ErrorCode.INVALID_ARGUMENT and "IPv4" in info.value.message
    assert "2001:db8::/32" in info.value.message
    with Sandbox.create(image="sandboxkit/base:bookworm", provider_options={"pull": "never"}) as plain:
        assert plain.network is None and plain.network_log() == []
        with pytest.raises(SandboxError) as info:
            plain.set_network(NetworkPolicy(allow_domains=["allowed.test"]))
        assert info.value.code == ErrorCode.INVALID_ARGUMENT
    with Sandbox.create(image="sandboxkit/base:bookworm", block_network=True) as blocked:
        assert blocked.network == NetworkPolicy.deny_all()
        with pytest.raises(SandboxError) as info:
            blocked.set_network(NetworkPolicy(allow_domains=["allowed.test"]))
        assert info.value.code == ErrorCode.INVALID_ARGUMENT


def test_close_removes_the_egress_and_its_network(docker_engine: docker.DockerClient, hosts: NetworkHosts) -> None:
    sandbox = _create(hosts, NetworkPolicy(allow_domains=["allowed.test"]))
    token = docker_engine.containers.get(sandbox.id).labels["sandboxkit.egress"]
    assert docker_engine.api.containers(filters={"label": f"sandboxkit.egress={token}"})
    sandbox.close()
    assert not docker_engine.api.containers(all=True, filters={"label": f"sandboxkit.egress={token}"})
    assert not docker_engine.api.networks(filters={"label": f"sandboxkit.egress={token}"})


def test_an_egress_ends_after_its_sandbox_and_gc_reaps_the_network(
    docker_engine: docker.DockerClient, hosts: NetworkHosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandboxkit_docker import _gc

    sandbox = _create(hosts, NetworkPolicy(allow_domains=["allowed.test"]))
    token = docker_engine.containers.get(sandbox.id).labels["sandboxkit.egress"]
    docker_engine.api.remove_container(sandbox.id, force=True)
    # the egress notices by itself that its sandbox is gone, and ends (auto-removed)
    deadline = time.monotonic() + 60
    while docker_engine.api.containers(all=True, filters={"label": f"sandboxkit.egress={token}"}):
        assert time.monotonic() < deadline, "the egress outlived its sandbox by a minute"
        time.sleep(0.5)
    assert docker_engine.api.networks(filters={"label": f"sandboxkit.egress={token}"})  # gc's job
    monkeypatch.setattr(_gc, "START_GRACE", 0.0)
    sandboxkit.gc("docker")
    assert not docker_engine.api.containers(all=True, filters={"label": f"sandboxkit.egress={token}"})
    assert not docker_engine.api.networks(filters={"label": f"sandboxkit.egress={token}"})
    sandbox.close()


# ---------------------------------------------------------------- credential injection
def test_injected_header_reaches_the_host_and_the_secret_never_enters_the_sandbox(
    docker_engine: docker.DockerClient, hosts: NetworkHosts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    create_secret("example-api", {"API_TOKEN": SECRET_VALUE})
    policy = NetworkPolicy(
        allow_domains=["allowed.test", "denied.test"],
        inject=[
            HeaderInjection(domain="allowed.test", secret="example-api", headers={"Authorization": "Bearer $API_TOKEN"})
        ],
        upstream_ca=hosts.ca_pem,
    )
    with _create(hosts, policy) as sb:
        for kind in ("proxy", "direct"):
            # the sandbox trusts the egress CA through SSL_CERT_FILE; it sends no credential itself
            r = probe(sb, kind, "https://allowed.test/api")
            assert r["ok"], r
            assert r["body"]["headers"].get("Authorization") == f"Bearer {SECRET_VALUE}"
        # other allowed names pass through untouched: no header, and the real host's certificate
        r = probe(sb, "direct", "https://denied.test/", CA_PATH)
        assert r["ok"] and "Authorization" not in r["body"]["headers"], r
        # nowhere the sandbox (or `docker inspect`, or the egress's log) can see
        half = len(SECRET_VALUE) // 2  # the full value never appears in a command line of its own
        find = (
            f"import os\nneedle = {SECRET_VALUE[:half]!r}.encode() + {SECRET_VALUE[half:]!r}.encode()\n"
            "for top in ('/bin', '/etc', '/home', '/opt', '/root', '/run', '/srv', '/tmp', '/usr', '/var'):\n"
            "    for d, _, names in os.walk(top):\n"
            "        for n in names:\n"
            "            try:\n"
            "                if needle in open(os.path.join(d, n), 'rb').read():\n"
            "                    print('FOUND', os.path.join(d, n))\n"
            "            except OSError:\n"
            "                pass\n"
        )
        sb.write_file("/tmp/find.py", find)
        seen = sb.execute(
            "env; ps -eww -o args; cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n'; "
            "python3 /tmp/find.py",
            user="root",
        )
        assert seen.exit_code == 0 and "HTTPS_PROXY" in seen.stdout
        assert SECRET_VALUE not in seen.stdout and "FOUND" not in seen.stdout
        token = docker_engine.containers.get(sb.id).labels["sandboxkit.egress"]
        egress = docker_engine.containers.get(f"sandboxkit-egress-{token}")
        assert SECRET_VALUE not in json.dumps(docker_engine.api.inspect_container(sb.id))
        assert SECRET_VALUE not in json.dumps(docker_engine.api.inspect_container(egress.id))
        assert SECRET_VALUE.encode() not in egress.logs()
        assert SECRET_VALUE not in repr(sb.network_log())
        processes = json.dumps(egress.top(ps_args="-ww -eo pid,args"))
        assert "egress.py" in processes and SECRET_VALUE not in processes
        assert SECRET_VALUE not in repr(sb.network)


def test_the_cli_shows_denied_attempts(sb: Sandbox) -> None:
    probe(sb, "dns", "cli-sees-me.denied.test")
    out = subprocess.run(
        [sys.executable, "-m", "sandboxkit.cli", "network", "log", sb.id, "--denied"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "cli-sees-me.denied.test" in out.stdout and "allowed " not in out.stdout
    rows = json.loads(
        subprocess.run(
            [sys.executable, "-m", "sandboxkit.cli", "network", "log", sb.id, "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    )
    assert {"verdict": "denied", "host": "cli-sees-me.denied.test"}.items() <= next(
        r for r in rows if r["host"] == "cli-sees-me.denied.test"
    ).items()


def test_the_policy_outlives_the_client_that_created_it(hosts: NetworkHosts) -> None:
    script = (
        "import os, sys\n"
        "from sandboxkit import NetworkPolicy, Sandbox\n"
        "sb = Sandbox.create(image='sandboxkit/base:bookworm', network=NetworkPolicy(allow_domains=['allowed.test']),"
        f" provider_options={{'pull': 'never', 'egress_network': {hosts.network!r}}}, timeout=300)\n"
        "print(sb.id, flush=True)\n"
        "os._exit(0)  # the client dies without closing anything\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    with Sandbox.from_id(out.stdout.strip().splitlines()[-1]) as orphan:
        orphan.write_file("/tmp/probe.py", PROBE)
        assert probe(orphan, "direct", "http://allowed.test/")["ok"]
        assert denied_fast(probe(orphan, "direct", "http://denied.test/"))
        assert orphan.network == NetworkPolicy(allow_domains=["allowed.test"])
