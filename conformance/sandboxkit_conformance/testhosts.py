"""Two offline "internet hosts" for network-policy tests: containers on an internal network the tests own.

``allowed.test`` (also ``api.allowed.test``) and ``denied.test`` each serve HTTP on 80 and HTTPS on
443 (a certificate of a CA made here), echo the request's headers as JSON, serve ``/bytes/N``, and
echo UDP on 9999. Nothing leaves the machine: the network is ``internal``. A provider hands the
network to its egress (Docker: ``provider_options={"egress_network": hosts.network}``) and
``hosts.ca_pem`` as ``NetworkPolicy(upstream_ca=...)``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

SERVER = r"""
import http.server, json, socket, socketserver, ssl, sys, threading
NAME = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/bytes/"):
            n = int(self.path.split("/")[2])
            self.send_response(200); self.send_header("Content-Length", str(n)); self.end_headers()
            chunk = b"x" * 262144
            while n > 0:
                self.wfile.write(chunk[: min(n, len(chunk))]); n -= len(chunk)
            return
        body = json.dumps({"server": NAME, "path": self.path, "headers": dict(self.headers.items())}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
plain = S(("0.0.0.0", 80), H)
tls = S(("0.0.0.0", 443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain("/srv/cert.pem")
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9999))
    while True:
        d, a = s.recvfrom(2048); s.sendto(NAME.encode() + b":" + d, a)
for srv in (plain.serve_forever, tls.serve_forever, udp):
    threading.Thread(target=srv, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


#: runs inside the sandbox: python3 PROBE.py KIND TARGET... -> one JSON line
PROBE = r"""
import json, socket, ssl, sys, time, urllib.request
kind, args = sys.argv[1], sys.argv[2:]
t = time.monotonic()
def done(**kw):
    kw["seconds"] = round(time.monotonic() - t, 3); print(json.dumps(kw)); sys.exit(0)
try:
    if kind in ("proxy", "direct"):
        handlers = [] if kind == "proxy" else [urllib.request.ProxyHandler({})]
        ctx = ssl.create_default_context(cafile=args[1] if len(args) > 1 else None)
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
        try:
            with urllib.request.build_opener(*handlers).open(args[0], timeout=10) as r:
                done(ok=True, status=r.status, body=json.loads(r.read()))
        except urllib.error.HTTPError as e:
            done(ok=False, status=e.code, error="http")
    if kind == "dns":
        done(ok=True, addr=socket.gethostbyname(args[0]))
    if kind == "tcp":
        s = socket.create_connection((args[0], int(args[1])), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: " + args[2].encode() + b"\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk: break
            data += chunk
        done(ok=b'"server"' in data, body=data.decode(errors="replace")[-300:])
    if kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
        s.connect((args[0], int(args[1]))); s.send(b"ping")
        done(ok=True, reply=s.recv(100).decode())
    if kind == "dnsq":  # a DNS query for args[1] sent to the server args[0] itself
        import struct
        name = b"".join(bytes([len(p)]) + p.encode() for p in args[1].split(".")) + b"\0"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
        s.sendto(struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + name + struct.pack("!HH", 1, 1), (args[0], 53))
        reply = s.recv(512)
        rcode, answers = reply[3] & 15, struct.unpack("!H", reply[6:8])[0]
        done(ok=rcode == 0 and answers > 0, rcode=rcode, addr=socket.inet_ntoa(reply[-4:]) if answers else None)
    if kind == "tcp6":
        socket.create_connection((args[0], int(args[1])), timeout=10)
        done(ok=True)
except SystemExit:
    raise
except BaseException as e:
    done(ok=False, error=type(e).__name__ + ": " + str(e))
"""


@dataclass(frozen=True)
class NetworkHosts:
    """Where the test hosts are: the network, names, addresses and the CA their certificates chain to."""

    network: str
    allowed: str
    allowed_alias: str
    denied: str
    allowed_ip: str
    denied_ip: str
    ca_pem: str
    #: create options that put a sandbox's egress on ``network`` (set by the provider's fixture)
    options: dict[str, Any] = field(default_factory=dict)


def _certs(names: list[str]) -> tuple[str, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sandboxkit test hosts CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
    return ca_pem, key_pem + cert.public_bytes(serialization.Encoding.PEM)


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@contextlib.contextmanager
def network_hosts(
    client: Any, labels: dict[str, str], image: str = "sandboxkit/base:bookworm"
) -> Iterator[NetworkHosts]:
    """Start the two hosts on a new internal network; remove them and it afterwards."""
    name = f"sbk-testhosts-{uuid.uuid4().hex[:8]}"
    ca_pem, chain = _certs(["allowed.test", "*.allowed.test", "denied.test"])
    network = client.networks.create(name, driver="bridge", internal=True, labels=labels)
    containers = []
    try:
        ips = {}
        for host, aliases in (("allowed", ["allowed.test", "api.allowed.test"]), ("denied", ["denied.test"])):
            c = client.containers.create(
                image,
                ["python3", "/srv/server.py", host],
                labels=labels,
                detach=True,
                network=name,
                name=f"{name}-{host}",
            )
            containers.append(c)
            network.disconnect(c)
            network.connect(c, aliases=aliases)
            c.put_archive("/srv", _tar({"server.py": SERVER.encode(), "cert.pem": chain}))
            c.start()
        deadline = time.monotonic() + 60
        for c in containers:
            while b"ready" not in c.logs() and time.monotonic() < deadline:
                time.sleep(0.1)
            c.reload()
            ips[c.name.rsplit("-", 1)[1]] = c.attrs["NetworkSettings"]["Networks"][name]["IPAddress"]
        yield NetworkHosts(
            network=name,
            allowed="allowed.test",
            allowed_alias="api.allowed.test",
            denied="denied.test",
            allowed_ip=ips["allowed"],
            denied_ip=ips["denied"],
            ca_pem=ca_pem,
        )
    finally:
        for c in containers:
            with contextlib.suppress(Exception):
                c.remove(force=True)
        for _ in range(50):
            try:
                network.reload()
                for attached in network.containers:  # e.g. an egress whose sandbox is still closing
                    with contextlib.suppress(Exception):
                        network.disconnect(attached, force=True)
                network.remove()
                break
            except Exception:
                time.sleep(0.2)


__all__ = ["PROBE", "NetworkHosts", "network_hosts"]
