"""Network policy on Docker: each policy sandbox sits alone with its own egress on an internal network.

The sandbox's network is ``internal`` (no route out) and has no host address (``inhibit_ipv4``), so
the only peer it can reach is its egress container: iptables there sends all its TCP and DNS to
``_egress_agent``, which allows what the policy names. Each sandbox has its own network, so no
sandbox can reach another's egress. The egress reaches the outside through the default bridge or
``egress_network``. It is named and labelled after a token that the sandbox's labels carry, ends
when the sandbox's lifetime does, is removed with it, and ``gc`` reaps it when the sandbox is gone.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import ipaddress
import json
import os
import random
import secrets
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import docker
import docker.errors

from sandboxkit.secrets import get_secret
from sandboxkit.spi import ErrorCode, ExecRequest, NetworkEvent, NetworkPolicy, SandboxError, StreamName
from sandboxkit_docker import _archive, _certs, _labels, _threads
from sandboxkit_docker._attached import AttachedLines
from sandboxkit_docker._errors import PROVIDER
from sandboxkit_docker._exec import ExecEngine
from sandboxkit_docker.images import DEFAULT_IMAGE

if TYPE_CHECKING:
    from sandboxkit_docker.provider import DockerProvider

#: label on the sandbox, its egress and its network: the token that ties them together
TOKEN = f"{_labels.PREFIX}.egress"
#: label on the egress container and network only
ROLE = f"{_labels.PREFIX}.egress_role"
#: label on the sandbox: its egress reads policy updates from its stdin (egresses from before read only exec)
STDIN = f"{_labels.PREFIX}.egress_stdin"
PROXY_PORT = 3128
VXLAN_PORT = 4789
#: the point-to-point link inside the VXLAN tunnel (the same in _egress_agent)
LINK_EGRESS, LINK_SANDBOX = "169.254.77.1", "169.254.77.2"
#: where the sandbox finds the egress CA (and the system CAs plus it)
CA_FILE = "/etc/sandboxkit/egress-ca.pem"
BUNDLE_FILE = "/etc/sandboxkit/ca-bundle.pem"
#: internal networks are /29s carved from this range (8192 of them)
POOL = ipaddress.ip_network("10.203.0.0/16")
#: iptables and iproute2 (for the VXLAN link) with what the base image lacks of their dependencies
DEBS = (
    "iproute2",
    "libbpf1",
    "libelf1",
    "libcap2-bin",
    "libbsd0",
    "libmd0",
    "libtirpc3",
    "libtirpc-common",
    "libdb5.3",
    "libcap2",
    "libgssapi-krb5-2",
    "libk5crypto3",
    "libkeyutils1",
    "libkrb5-3",
    "libkrb5support0",
    "libcom-err2",
    "iptables",
    "libip4tc2",
    "libip6tc2",
    "libmnl0",
    "libnetfilter-conntrack3",
    "libnfnetlink0",
    "libnftnl11",
    "libxtables12",
    "netbase",
)
APPLY_DEADLINE = 60.0
#: seconds an update over the egress's stdin may take before the exec path is tried instead
STDIN_DEADLINE = 10.0
_AGENT = Path(__file__).with_name("_egress_agent.py")
_image_lock = threading.Lock()


def egress_network(option: str | None) -> str:
    """The Docker network the egress reaches the outside through."""
    return option or os.environ.get("SANDBOXKIT_DOCKER_EGRESS_NETWORK") or "bridge"


def resolve(policy: NetworkPolicy) -> NetworkPolicy:
    """``policy`` as the egress enforces it: IPv6 CIDRs refused (IPv6 is off in a policy sandbox), and
    ``upstream_ca`` from ``$SANDBOXKIT_DOCKER_EGRESS_CA`` when it names none."""
    ipv6 = [c for c in policy.allow_cidrs if ipaddress.ip_network(c).version == 6]
    if ipv6:
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT,
            f"allow_cidrs {', '.join(ipv6)}: IPv6 is switched off in Docker policy sandboxes, so an IPv6 CIDR "
            "would allow nothing; allow the IPv4 range (or the host's name in allow_domains) instead",
            provider=PROVIDER,
        )
    path = os.environ.get("SANDBOXKIT_DOCKER_EGRESS_CA")
    if policy.upstream_ca or not path:
        return policy
    try:
        pem = Path(path).read_text()
    except OSError as exc:
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT,
            f"SANDBOXKIT_DOCKER_EGRESS_CA={path} cannot be read ({exc.strerror}); point it at a PEM file",
            provider=PROVIDER,
        ) from None
    return policy.model_copy(update={"upstream_ca": pem})


# ------------------------------------------------------------------ the image
def image_tag() -> str:
    digest = hashlib.sha256(_AGENT.read_bytes() + " ".join(DEBS).encode()).hexdigest()[:12]
    return f"sandboxkit/egress:{digest}"


def ensure_image(client: docker.DockerClient) -> str:
    """Build the egress image (base image + iptables + iproute2 + the agent) unless present."""
    tag = image_tag()
    with _image_lock:
        try:
            client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
        with tempfile.TemporaryDirectory(prefix="sandboxkit-egress-") as tmp:
            argv = ["apt-get", "download", *DEBS]
            done = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:  # a fresh machine may have no package lists yet
                subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300)
                done = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise SandboxError(
                    ErrorCode.SANDBOX_CREATION_FAILED,
                    "building the egress image needs `apt-get download` of iptables and iproute2 from this "
                    f"machine's Debian mirror: {done.stderr.strip()[-300:]}",
                    provider=PROVIDER,
                )
            context = io.BytesIO()
            with tarfile.open(fileobj=context, mode="w") as tar:
                for name in sorted(os.listdir(tmp)):
                    tar.add(os.path.join(tmp, name), f"debs/{name}")
                tar.add(str(_AGENT), "egress.py")
                dockerfile = (
                    f"FROM {DEFAULT_IMAGE}\nCOPY debs /tmp/debs\n"
                    "RUN dpkg -i /tmp/debs/*.deb >/dev/null && rm -rf /tmp/debs\n"
                    "COPY egress.py /usr/local/lib/sandboxkit/egress.py\n"
                ).encode()
                info = tarfile.TarInfo("Dockerfile")
                info.size = len(dockerfile)
                tar.addfile(info, io.BytesIO(dockerfile))
            context.seek(0)
            client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, labels={ROLE: "image"})
        return tag


# ------------------------------------------------------------------ one sandbox's egress
class Egress:
    """The egress of one sandbox, found again from the token in the sandbox's labels."""

    def __init__(self, provider: DockerProvider, token: str, stdin: bool = True) -> None:
        self.provider = provider
        self.token = token
        self.stdin = stdin
        self.image = ""  # the egress image (known once created here)
        self.name = f"sandboxkit-egress-{token}"
        self.address = ""
        self.sandbox_address = ""

    @classmethod
    async def prepare(cls, provider: DockerProvider, kwargs: dict[str, Any], network_option: str | None) -> Egress:
        """Start a new egress and point the sandbox's create ``kwargs`` at it (the user's env wins)."""
        network = egress_network(network_option)
        await provider.call(_check_network, provider.client(), network)
        egress = cls(provider, secrets.token_hex(6))
        labels = kwargs["labels"]
        labels[TOKEN] = egress.token
        labels[STDIN] = "1"
        try:
            extra = await egress.create(labels, network)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await egress.remove()
            raise
        kwargs["network"] = egress.name
        endpoint = docker.types.EndpointConfig(provider.client().api._version, ipv4_address=egress.sandbox_address)
        kwargs["networking_config"] = {egress.name: endpoint}
        kwargs["dns"] = [egress.address]
        if not (provider.local_engine() and not os.path.exists("/proc/sys/net/ipv6")):  # a kernel without IPv6
            kwargs["sysctls"] = {**(kwargs.get("sysctls") or {}), **extra["sysctls"]}
        kwargs["environment"] = {**extra["environment"], **(kwargs.get("environment") or {})}
        return egress

    @classmethod
    def of(cls, provider: DockerProvider, labels: Mapping[str, str]) -> Egress | None:
        token = labels.get(TOKEN)
        return None if token is None else cls(provider, token, stdin=labels.get(STDIN) == "1")

    def labels(self, sandbox_labels: Mapping[str, str], role: str) -> dict[str, str]:
        keep = (_labels.CREATED_AT, _labels.EXPIRES_AT, _labels.OWNER)
        copied = {k: v for k, v in sandbox_labels.items() if k in keep or k.startswith(_labels.USER)}
        return {TOKEN: self.token, ROLE: role, **copied}

    async def create(self, labels: Mapping[str, str], network: str) -> dict[str, Any]:
        """Network and egress container, started; the create options that put a sandbox behind them."""
        client = await _threads.run_sync(self.provider.client)
        image = self.image = await self.provider.call(ensure_image, client, creating=True)
        subnet = await self.provider.call(self._network, client, labels, creating=True)
        address = self.address = str(subnet[2])
        self.sandbox_address = str(subnet[3])
        expires = float(labels.get(_labels.EXPIRES_AT) or time.time() + 86400) + 5
        api = client.api
        host_config = api.create_host_config(
            cap_add=["NET_ADMIN"],
            sysctls={"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.disable_ipv6": "1"},
            tmpfs={"/run/sbk": "mode=0700"},
            auto_remove=True,
            init=True,
            network_mode=self.name,
        )
        endpoint = api.create_networking_config({self.name: api.create_endpoint_config(ipv4_address=address)})

        def start() -> None:
            config = api.create_container_config(
                image,
                ["python3", "/usr/local/lib/sandboxkit/egress.py", address, str(subnet), f"{expires:.0f}"],
                labels=self.labels(labels, "egress"),
                host_config=host_config,
                networking_config=endpoint,
                stdin_open=True,  # policy updates arrive there (see apply)...
            )
            config["StdinOnce"] = False  # ...from every client that attaches (docker-py sets True)
            created = api.create_container_from_config(config, name=self.name)
            api.connect_container_to_network(created["Id"], network)
            api.start(created["Id"])

        await self.provider.call(start, creating=True)
        env = {
            "HTTP_PROXY": f"http://{address}:{PROXY_PORT}",
            "HTTPS_PROXY": f"http://{address}:{PROXY_PORT}",
            "NO_PROXY": "localhost,127.0.0.1",
            "SSL_CERT_FILE": BUNDLE_FILE,
            "REQUESTS_CA_BUNDLE": BUNDLE_FILE,
            "NODE_EXTRA_CA_CERTS": CA_FILE,
        }
        env.update({k.lower(): v for k, v in env.items() if k.endswith("PROXY")})
        return {"sysctls": {"net.ipv6.conf.all.disable_ipv6": "1"}, "environment": env}

    def _network(self, client: docker.DockerClient, labels: Mapping[str, str]) -> ipaddress.IPv4Network:
        subnets = list(POOL.subnets(new_prefix=29))
        for _ in range(8):
            subnet = random.choice(subnets)
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet))])
            try:
                client.api.create_network(
                    self.name,
                    driver="bridge",
                    internal=True,
                    ipam=ipam,
                    options={"com.docker.network.bridge.inhibit_ipv4": "true"},
                    labels=self.labels(labels, "network"),
                )
                return subnet  # type: ignore[return-value]
            except docker.errors.APIError as exc:
                if "overlap" not in str(exc).lower():
                    raise
        raise SandboxError(
            ErrorCode.SANDBOX_CREATION_FAILED, f"no free /29 for a sandbox network in {POOL}", provider=PROVIDER
        )

    async def attach(self, sandbox_id: str, policy: NetworkPolicy) -> None:
        """Route the started sandbox through the egress, install the CA, apply ``policy``."""
        client = await _threads.run_sync(self.provider.client)
        ca_cert, ca_key = _certs.new_ca(f"sandboxkit egress {self.token}")
        await self._put({"ca.key": ca_key, "ca.pem": ca_cert})
        link = (
            f"ip link add sbk0 type vxlan id 1 remote {self.address} local {self.sandbox_address} "
            f"dstport {VXLAN_PORT} dev eth0 && ip addr add {LINK_SANDBOX}/30 dev sbk0 && "
            f"ip link set sbk0 mtu 1450 up && ip route replace default via {LINK_EGRESS} dev sbk0"
        )
        await self.provider.call(
            client.containers.run,
            self.image or image_tag(),
            ["sh", "-c", link],
            network_mode=f"container:{sandbox_id}",
            cap_add=["NET_ADMIN"],
            remove=True,
            labels={TOKEN: self.token, ROLE: "route"},
            sandbox_id=sandbox_id,
            creating=True,
        )
        install = (
            f"mkdir -p /etc/sandboxkit && cat > {CA_FILE} && "
            f"{{ cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null; cat {CA_FILE}; }} > {BUNDLE_FILE}.tmp && "
            f"mv {BUNDLE_FILE}.tmp {BUNDLE_FILE} && chmod 644 {CA_FILE} {BUNDLE_FILE} && "
            f"if [ -d /usr/local/share/ca-certificates ]; then cp {CA_FILE} /usr/local/share/ca-certificates/"
            f"sandboxkit-egress.crt; fi && if [ -f /etc/ssl/certs/ca-certificates.crt ]; then "
            f"cat {CA_FILE} >> /etc/ssl/certs/ca-certificates.crt; fi"
        )
        await self._exec(sandbox_id, ["sh", "-c", install], ca_cert)
        await self.apply(policy, ca=(ca_cert, ca_key))

    async def apply(self, policy: NetworkPolicy, ca: tuple[bytes, bytes] | None = None) -> None:
        """Hand ``policy`` (with the secrets' values) to the egress and wait until it is in force.

        One line to the egress container's stdin through ``docker attach`` (no process starts, in the
        container or the engine), answered on its stdout once the policy is in force. When that gives
        no answer (an egress from before, lines of two clients mixed, 10 s without one): one exec
        (holding a lock, one update at a time) unpacks the files, tells the agent the new version over
        its ``ctl`` FIFO and returns when the agent answers on ``ack.VERSION`` (an egress from before
        the FIFO is polled).
        The CA is read back from the egress only when ``policy`` injects headers.
        """
        version = secrets.token_hex(8)
        files: dict[str, bytes] = {"public.json": policy.model_dump_json().encode()}
        inject = []
        if policy.inject and ca is None:
            ca = _split_ca(await self._read("ca.pem", "ca.key"))
        for rule in policy.inject:
            assert ca is not None
            values = get_secret(rule.secret)
            headers = {name: _render(template, values) for name, template in rule.headers.items()}
            inject.append({"domain": rule.domain, "headers": headers})
            cert, key = _certs.leaf(rule.domain, *ca)
            files[f"certs/{rule.domain.replace('*', '_')}.pem"] = key + cert
        config = {
            "version": version,
            "domains": list(policy.allow_domains),
            "cidrs": list(policy.allow_cidrs),
            "ports": list(policy.ports),
            "inject": inject,
            "upstream_ca": policy.upstream_ca,
        }
        files["policy.json"] = json.dumps(config).encode()
        if self.stdin:
            client = await _threads.run_sync(self.provider.client)
            answer = await self.provider.call(tell, client.api, self.name, version, files)
            if answer == "ok":
                return
            if answer is not None:
                raise SandboxError(
                    ErrorCode.PROVIDER_UNAVAILABLE,
                    f"the sandbox's egress did not apply the policy ({answer}); `docker logs {self.name}`",
                    provider=PROVIDER,
                )
        polls = int(APPLY_DEADLINE / 0.05)
        notify = (
            f"if [ -p ctl ]; then mkfifo -m 600 ack.{version} && exec 3<>ack.{version} && echo {version} > ctl && "
            f'read -r answer <&3; rm -f ack.{version}; [ "$answer" = ok ] || {{ echo "$answer" >&2; exit 3; }}; '
            f'else i=0; while [ "$(cat loaded 2>/dev/null)" != {version} ]; do '
            f"i=$((i + 1)); [ $i -le {polls} ] || exit 3; sleep 0.05; done; fi"
        )
        try:
            # flock: concurrent updates take turns, so each returns with its own policy in force
            script = f"{UNPACK} && cd /run/sbk && {notify}"
            await self._exec(self.name, ["flock", "/run/sbk/apply.lock", "sh", "-c", script], _pack(files))
        except SandboxError as exc:
            raise SandboxError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                f"the sandbox's egress did not apply the policy ({exc.message[-120:]}); `docker logs {self.name}`",
                provider=PROVIDER,
            ) from None

    async def policy(self) -> NetworkPolicy | None:
        try:
            return NetworkPolicy.model_validate_json(await self._read("public.json"))
        except SandboxError:
            return None

    async def events(self) -> list[NetworkEvent]:
        out = []
        for line in (await self._read("events.jsonl")).decode().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            out.append(
                NetworkEvent(
                    at=dt.datetime.fromtimestamp(row["at"], dt.UTC),
                    host=row.get("host"),
                    address=row.get("address"),
                    port=row.get("port"),
                    verdict=row["verdict"],
                    reason=row.get("reason", ""),
                )
            )
        return out

    async def remove(self) -> None:
        """Remove the egress container and the network (idempotent)."""
        client = await _threads.run_sync(self.provider.client)
        await self.provider.call(remove_all, client, self.token)

    async def _put(self, files: Mapping[str, bytes]) -> None:
        await self._exec(self.name, ["sh", "-c", UNPACK], _pack(files))

    async def _read(self, *names: str) -> bytes:
        return await self._exec(self.name, ["cat", *(f"/run/sbk/{name}" for name in names)], None)

    async def _exec(self, container: str, argv: list[str], stdin: bytes | None) -> bytes:
        api = (await _threads.run_sync(self.provider.client)).api
        engine = ExecEngine(api, container, dict)
        out: list[bytes] = []
        err: list[bytes] = []

        async def collect(stream: StreamName, data: bytes) -> None:
            (out if stream == "stdout" else err).append(data)

        result = await engine.run(ExecRequest(argv=argv, stdin=stdin, user="0", timeout=APPLY_DEADLINE + 10), collect)
        if result.exit_code != 0:
            raise SandboxError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                f"{argv[0]} in {container[:32]} failed: {b''.join(err).decode(errors='replace')[-200:]}",
                provider=PROVIDER,
            )
        return b"".join(out)


def tell(api: Any, container: str, version: str, files: Mapping[str, bytes]) -> str | None:
    """Send one update to the egress's stdin and return its answer (None: none came; blocking).

    Attached to stdin and stdout at once, so the answer cannot pass before we listen.
    """
    line = json.dumps({"version": version, "files": {n: base64.b64encode(d).decode() for n, d in files.items()}})
    try:
        sock = api.attach_socket(container, params={"stdin": 1, "stdout": 1, "stream": 1})
    except docker.errors.APIError:
        return None
    try:
        lines = AttachedLines(sock, STDIN_DEADLINE)
    except OSError:  # e.g. an SSH transport (no socket): the exec path serves it
        return None
    try:
        lines.send(line.encode())
        deadline = time.monotonic() + STDIN_DEADLINE
        mine = f"sbk-ack {version} ".encode()
        while time.monotonic() < deadline:
            row = lines.readline()
            if row is None:
                return None
            if mine in row:
                return row.split(mine, 1)[1].decode(errors="replace").strip()
            if b"sbk-ack garbled" in row:
                return None
    except OSError:
        return None
    finally:
        lines.close()
    return None


def _check_network(client: docker.DockerClient, name: str) -> None:
    try:
        client.api.inspect_network(name)
    except docker.errors.NotFound:
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT,
            f"egress network {name!r} does not exist; create it (`docker network create {name}`) or name another "
            "in provider_options egress_network / $SANDBOXKIT_DOCKER_EGRESS_NETWORK",
            provider=PROVIDER,
        ) from None


#: extracts a tar from stdin into the egress's tmpfs (``-m``: fresh mtimes, so the agent sees a change)
UNPACK = "tar -x -m -C /run/sbk -f -"


def _pack(files: Mapping[str, bytes]) -> bytes:
    return _archive.pack([(f"/{name}", data) for name, data in files.items()], mode=0o600)


def _split_ca(pem: bytes) -> tuple[bytes, bytes]:
    """``(certificate, key)`` from ``ca.pem`` and ``ca.key`` read back as one stream."""
    end = b"-----END CERTIFICATE-----\n"
    cert, _, key = pem.partition(end)
    return cert + end, key


def _render(template: str, values: Mapping[str, str]) -> str:
    out = template
    for key in sorted(values, key=len, reverse=True):
        out = out.replace("${" + key + "}", values[key]).replace("$" + key, values[key])
    return out


def remove_all(client: docker.DockerClient, token: str) -> None:
    """Remove every container and the network of ``token`` (blocking)."""
    for row in client.api.containers(all=True, filters={"label": [f"{TOKEN}={token}", ROLE]}):
        try:
            client.api.remove_container(row["Id"], force=True)
        except docker.errors.NotFound:
            pass
    for net in client.api.networks(filters={"label": [f"{TOKEN}={token}"]}):
        for _ in range(20):  # the engine detaches a removed container's endpoint asynchronously
            try:
                client.api.remove_network(net["Id"])
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError:
                time.sleep(0.1)


def reap(client: docker.DockerClient, live_tokens: set[str], grace: float, dry_run: bool) -> list[str]:
    """Tokens whose egress or network outlived its sandbox (older than ``grace`` s); removed unless dry_run."""
    now = time.time()
    stale: set[str] = set()
    rows = client.api.containers(all=True, filters={"label": [ROLE]})
    rows += client.api.networks(filters={"label": [ROLE]})
    for row in rows:
        labels = row.get("Labels") or {}
        token = labels.get(TOKEN)
        created = float(labels.get(_labels.CREATED_AT) or 0)
        if token and token not in live_tokens and now - created > grace:
            stale.add(token)
    if not dry_run:
        for token in stale:
            remove_all(client, token)
    return sorted(stale)
