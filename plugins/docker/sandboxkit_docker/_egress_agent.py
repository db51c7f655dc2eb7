"""The egress of one policy sandbox: the only way out of its internal network (stdlib only).

Runs as PID 1's child in the egress container (NET_ADMIN, never shared with the sandbox). The
sandbox's default route is a VXLAN link to here (Docker drops off-subnet packets on an internal
bridge, so they travel encapsulated); iptables sends every TCP connection arriving from the sandbox
to one listener here and every DNS query to the DNS server here; everything else is rejected,
except UDP and ICMP to allowed CIDRs, which the kernel forwards.

- DNS: an allowed name resolves to this egress's internal address; any other name is NXDOMAIN.
- TCP to this address (the sandbox resolved an allowed name): the name is read from TLS SNI or
  the HTTP Host header and the connection is spliced to it (or refused: reset for TLS, 403 for HTTP).
  Port 3128 is also an HTTP proxy (CONNECT and absolute URLs) for clients that use HTTP(S)_PROXY.
- TCP to another address: spliced when the address is in an allowed CIDR, else reset.
- Names with header injection: TLS is terminated with a certificate of the sandbox's own CA, the
  headers are set, and the request goes on over TLS to the real host (one request per connection).

The client sends an update as one line to this container's stdin (``docker attach``; only the
Docker API reaches it) and reads ``sbk-ack VERSION ok`` from its stdout once it is in force. The
fallback (an exec) writes ``policy.json`` (mode 0600), writes the version to the ``ctl`` FIFO and
waits on its own ``ack.VERSION`` FIFO. Neither side polls. Events go to ``events.jsonl``; nothing
here ever writes a header value anywhere but to the upstream connection.
"""

from __future__ import annotations

import _thread
import base64
import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import re
import select
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

STATE = "/run/sbk"
POLICY = f"{STATE}/policy.json"
LOADED = f"{STATE}/loaded"
CTL = f"{STATE}/ctl"
EVENTS = f"{STATE}/events.jsonl"
LISTEN_PORT = 15001
PROXY_PORT = 3128
DNS_TTL = 1
VXLAN_PORT = 4789
#: the point-to-point link inside the tunnel: egress .1, sandbox .2
LINK_EGRESS, LINK_SANDBOX = "169.254.77.1", "169.254.77.2"
SO_ORIGINAL_DST = 80
MAX_HEAD = 65536
MAX_EVENTS = 5000
#: threads waiting in ``accept`` at the start, and at most once connections are served
SPARE_ACCEPTORS, MAX_ACCEPTORS = 2, 8
#: bytes one read of a relay takes at most
CHUNK = 1 << 18
#: the files a policy update may write under STATE
STATE_FILE = re.compile(r"(policy|public)\.json|certs/[A-Za-z0-9_.-]+\.pem")
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


class Policy:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.version = str(raw.get("version", ""))
        self.domains = [d.lower() for d in raw.get("domains", [])]
        self.cidrs = [ipaddress.ip_network(c) for c in raw.get("cidrs", [])]
        self.ports = set(raw.get("ports", [80, 443]))
        self.inject: dict[str, dict[str, str]] = {r["domain"]: r["headers"] for r in raw.get("inject", [])}
        self.upstream_ca: str | None = raw.get("upstream_ca")

    def allows_name(self, host: str) -> bool:
        return any(_matches(p, host) for p in self.domains)

    def allows_ip(self, ip: str) -> bool:
        if not self.cidrs or not (ip[:1].isdigit() or ":" in ip):  # a name (no exception raised for it)
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.cidrs)

    def injection(self, host: str) -> tuple[str, dict[str, str]] | None:
        for pattern, headers in self.inject.items():
            if _matches(pattern, host):
                return pattern, headers
        return None


def _matches(pattern: str, host: str) -> bool:
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


class Agent:
    def __init__(self, address: str, subnet: str, expires: float) -> None:
        self.address = address
        self.listen = (address, LINK_EGRESS)
        self.subnet = subnet
        self.expires = expires
        self.policy = Policy({"version": ""})
        self.stamp: tuple[int, int, int] = (0, 0, 0)
        self.cidrs: list[Any] | None = None  # what SBK_FWD allows now (None: not set up yet)
        self.lock = threading.Lock()  # one reload at a time
        self.log_lock = threading.Lock()
        self.events = 0
        self.told = False  # a client has sent a policy over ``ctl`` (so the sandbox was started)
        self.idle_lock = threading.Lock()
        self.events_fd = -1  # events.jsonl, kept open

    # ------------------------------------------------------------ policy
    def reload(self) -> None:
        """Put ``policy.json`` in force (the firewall first, then the proxy and DNS) unless it is in force."""
        with self.lock:
            try:
                st = os.stat(POLICY)
            except FileNotFoundError:
                return
            stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
            if stamp == self.stamp:
                return
            with open(POLICY) as f:
                policy = Policy(json.load(f))
            self.firewall_cidrs(policy)
            self.stamp = stamp
            self.policy = policy
            tmp = LOADED + ".tmp"
            with open(tmp, "w") as f:
                f.write(policy.version)
            os.replace(tmp, LOADED)

    def serve_ctl(self) -> None:
        """Each line written to the ``ctl`` FIFO is a version the client waits for on ``ack.VERSION``."""
        while True:
            with open(CTL) as ctl:  # blocks until a client writes
                for line in ctl:
                    version = line.strip()
                    self.told = True  # the client applies policies once it has started the sandbox
                    try:
                        self.reload()
                        answer = "ok" if self.policy.version == version else f"stale {self.policy.version}"
                    except Exception as exc:  # a bad policy file: say so, keep the one in force
                        answer = f"error {type(exc).__name__}"
                    if version.isalnum():
                        acknowledge(f"{STATE}/ack.{version}", answer)

    def serve_stdin(self) -> None:
        """Each line on the container's stdin (only the Docker API reaches it) is a policy update.

        The line is ``{"version": V, "files": {NAME: BASE64}}``; the files are written, the policy is put
        in force and ``sbk-ack V ANSWER`` goes to stdout, where the client (attached to both) waits for
        it: no process is started on this path. A line that does not parse (two clients' lines mixed)
        is answered ``sbk-ack garbled``, and the clients waiting fall back to the exec path.
        """
        for line in sys.stdin.buffer:
            try:
                message = json.loads(line)
                version = str(message["version"])
                files = {name: base64.b64decode(data, validate=True) for name, data in message["files"].items()}
                if not version.isalnum() or not all(STATE_FILE.fullmatch(name) for name in files):
                    raise ValueError(version)
            except Exception:
                say("sbk-ack garbled")
                continue
            self.told = True
            try:
                for name in sorted(files, key=lambda n: n == "policy.json"):  # the policy last
                    write_state(name, files[name])
                self.reload()
                answer = "ok" if self.policy.version == version else f"stale {self.policy.version}"
            except Exception as exc:
                answer = f"error {type(exc).__name__}"
            say(f"sbk-ack {version} {answer}")

    def firewall_cidrs(self, policy: Policy) -> None:
        """UDP (and ICMP) to allowed CIDRs is forwarded by the kernel; TCP always comes to us.

        One ``iptables-restore`` replaces the chain atomically; skipped when the CIDRs did not change.
        """
        if policy.cidrs == self.cidrs:
            return
        rules = ["*filter", ":SBK_FWD - [0:0]"]
        for net in policy.cidrs:
            if net.version == 4:
                rules += [f"-A SBK_FWD -d {net} -p udp -j ACCEPT", f"-A SBK_FWD -d {net} -p icmp -j ACCEPT"]
        rules += [
            "-A SBK_FWD -p udp -j REJECT --reject-with icmp-port-unreachable",
            "-A SBK_FWD -j REJECT --reject-with icmp-admin-prohibited",
            "COMMIT",
        ]
        subprocess.run(["iptables-restore", "-w", "--noflush"], input="\n".join(rules) + "\n", text=True, check=True)
        self.cidrs = list(policy.cidrs)

    def log(self, verdict: str, host: str | None, address: str | None, port: int | None, reason: str) -> None:
        line = json.dumps(
            {"at": time.time(), "host": host, "address": address, "port": port, "verdict": verdict, "reason": reason}
        )
        with self.log_lock:
            self.events += 1
            if self.events_fd < 0:
                self.events_fd = os.open(EVENTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.write(self.events_fd, line.encode() + b"\n")
            if self.events % 500 == 0:
                with open(EVENTS) as f:
                    lines = f.readlines()
                if len(lines) > MAX_EVENTS:
                    with open(EVENTS, "w") as f:  # same file (O_APPEND writes go to its new end)
                        f.writelines(lines[-MAX_EVENTS:])
        if verdict == "denied":
            say(f"denied {host or address}:{port} ({reason})")

    # ------------------------------------------------------------ DNS
    def serve_dns(self, listen: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((listen, 53))
        while True:
            data, peer = sock.recvfrom(4096)
            with contextlib.suppress(Exception):
                reply = self.answer(data)
                if reply:
                    sock.sendto(reply, peer)

    def answer(self, query: bytes) -> bytes | None:
        if len(query) < 17:
            return None
        qid, flags, qdcount = struct.unpack("!HHH", query[:6])
        if flags & 0x8000 or qdcount != 1:
            return None
        labels, pos = [], 12
        while query[pos]:
            n = query[pos]
            labels.append(query[pos + 1 : pos + 1 + n].decode("ascii", "replace"))
            pos += 1 + n
        qtype, _qclass = struct.unpack("!HH", query[pos + 1 : pos + 5])
        question = query[12 : pos + 5]
        name = ".".join(labels).lower()
        rd = flags & 0x0100
        if not self.policy.allows_name(name):
            self.log("denied", name, None, None, "dns: name not allowed")
            return struct.pack("!HHHHHH", qid, 0x8003 | rd | 0x0400, 1, 0, 0, 0) + question
        answers = b""
        count = 0
        if qtype == 1:  # A: this egress
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, DNS_TTL, 4) + socket.inet_aton(self.address)
            count = 1
        return struct.pack("!HHHHHH", qid, 0x8000 | rd | 0x0400, 1, count, 0, 0) + question + answers

    # ------------------------------------------------------------ TCP
    def serve_tcp(self, listen: str) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((listen, LISTEN_PORT))
        server.listen(512)
        idle = [0]  # threads waiting in this listener's ``accept``
        for _ in range(SPARE_ACCEPTORS):
            _thread.start_new_thread(self.accept, (server, idle))

    def accept(self, server: socket.socket, idle: list[int]) -> None:
        """Threads wait in ``accept`` ahead of time, so a connection never waits for a thread to start.

        The one that takes a connection serves it, and then waits again (unless many others wait). Only
        when no other thread is left waiting does it first start one more (without waiting for it, as
        ``Thread.start`` would): one connection at a time starts no thread at all.
        """
        while True:
            with self.idle_lock:
                idle[0] += 1
            try:
                conn, _ = server.accept()
            except OSError:  # out of descriptors, say: wait a little, never stop accepting
                conn = None
            with self.idle_lock:
                idle[0] -= 1
                spawn = conn is not None and idle[0] == 0
            if conn is None:
                time.sleep(0.05)
                continue
            if spawn:
                _thread.start_new_thread(self.accept, (server, idle))
            self.handle(conn)
            with self.idle_lock:
                if idle[0] >= MAX_ACCEPTORS:
                    return

    def handle(self, conn: socket.socket) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
            port = struct.unpack("!H", raw[2:4])[0]
            ip = socket.inet_ntoa(raw[4:8])
            policy = self.policy
            if ip not in self.listen:
                if policy.allows_ip(ip):
                    upstream = connect(ip, port)
                    splice(conn, upstream, later=lambda: self.log("allowed", None, ip, port, "cidr"))
                else:
                    self.log("denied", None, ip, port, "address not in allow_cidrs")
                    reset(conn)
                return
            if port == PROXY_PORT:
                self.proxy(conn, policy)
            else:
                self.transparent(conn, port, policy)
        except Exception as exc:  # one connection's failure never stops the egress
            say(f"connection error: {type(exc).__name__}")
            reset(conn)

    def transparent(self, conn: socket.socket, port: int, policy: Policy) -> None:
        conn.settimeout(10)
        first = conn.recv(MAX_HEAD, socket.MSG_PEEK)
        tls = first[:1] == b"\x16"
        if tls:
            for _ in range(20):  # a ClientHello split over packets
                host = sni(first)
                if host is not None or len(first) >= MAX_HEAD:
                    break
                time.sleep(0.01)
                first = conn.recv(MAX_HEAD, socket.MSG_PEEK)
        else:
            host = http_host(first)
        if not host or not policy.allows_name(host) or port not in policy.ports:
            why = "no name in the request" if not host else "name not allowed" if port in policy.ports else "port"
            self.log("denied", host, None, port, why)
            if tls or not first:
                reset(conn)
            else:
                forbidden(conn, host or "")
            return
        self.forward(conn, host, port, tls, policy)

    def proxy(self, conn: socket.socket, policy: Policy) -> None:
        conn.settimeout(10)
        head = read_head(conn)
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, target, _ = [*line.split(" "), "", ""][:3]
        if method == "CONNECT":
            host, _, port_text = target.rpartition(":")
            port = int(port_text or 443)
            rest = b""
        elif target.startswith("http://"):
            authority, _, path = target[7:].partition("/")
            host, _, port_text = authority.partition(":")
            port = int(port_text or 80)
            rest = head.replace(target.encode("latin-1"), b"/" + path.encode("latin-1"), 1)
        else:
            forbidden(conn, "")
            return
        host = host.strip("[]").lower()
        if policy.allows_ip(host) or (policy.allows_name(host) and port in policy.ports):
            if method == "CONNECT" and policy.injection(host) is None:  # pass-through: TLS or not, no matter
                conn.sendall(ESTABLISHED)  # first: connecting takes longer (the SYN is handled in the call)
                upstream = connect(host, port, wait=False)  # its handshake overlaps the client's next step
                connected(upstream)
                self.forward(conn, host, port, False, policy, head.partition(b"\r\n\r\n")[2], upstream)
            elif method == "CONNECT":
                conn.sendall(ESTABLISHED)
                first = conn.recv(1, socket.MSG_PEEK)
                self.forward(conn, host, port, first == b"\x16", policy)
            else:
                self.forward(conn, host, port, False, policy, rest)
            return
        self.log("denied", host, None, port, "proxy: not allowed")
        forbidden(conn, host)

    def forward(
        self,
        conn: socket.socket,
        host: str,
        port: int,
        tls: bool,
        policy: Policy,
        head: bytes = b"",
        upstream: socket.socket | None = None,
    ) -> None:
        injection = policy.injection(host) if tls else None
        if upstream is None:
            upstream = connect(host, port)
        if injection is None:
            splice(conn, upstream, head, lambda: self.log("allowed", host, None, port, "domain"))
            return
        self.log("allowed", host, None, port, "injected")
        upstream.settimeout(10)
        pattern, headers = injection
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(f"{STATE}/certs/{pattern.replace('*', '_')}.pem")
        inner = server_ctx.wrap_socket(conn, server_side=True)
        client_ctx = ssl.create_default_context()
        if policy.upstream_ca:
            client_ctx.load_verify_locations(cadata=policy.upstream_ca)
        out = client_ctx.wrap_socket(upstream, server_hostname=host)
        request = read_head(inner)
        out.sendall(inject(request, headers))
        splice(inner, out)


_resolved: dict[str, tuple[float, str]] = {}
#: seconds an upstream name's address is reused (the egress network's DNS answers it)
RESOLVE_TTL = 10.0


def connect(host: str, port: int, wait: bool = True) -> socket.socket:
    """A TCP connection upstream (names resolved as the egress network resolves them, briefly cached).

    ``wait=False`` returns once the SYN is sent; :func:`connected` waits for the handshake.
    """
    now = time.monotonic()
    cached = _resolved.get(host)
    if cached is None or cached[0] < now:
        address = str(socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])
        cached = _resolved[host] = (now + RESOLVE_TTL, address)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        err = sock.connect_ex((cached[1], port))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, os.strerror(err))
        if wait:
            connected(sock)
    except BaseException:
        sock.close()
        raise
    return sock


def connected(sock: socket.socket) -> None:
    """Wait (10 s at most) for a :func:`connect` begun with ``wait=False``; the socket is blocking after."""
    _, writable, _ = select.select([], [sock], [], 10)
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if writable else errno.ETIMEDOUT
    if err:
        sock.close()
        raise OSError(err, os.strerror(err))
    sock.setblocking(True)


def read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk or len(data) > MAX_HEAD:
            break
        data += chunk
    return data


def inject(head: bytes, headers: dict[str, str]) -> bytes:
    """The request head with ``headers`` set (replacing the client's) and ``Connection: close``."""
    top, _, body = head.partition(b"\r\n\r\n")
    lines = top.split(b"\r\n")
    names = {n.lower() for n in headers} | {"connection", "proxy-connection"}
    kept = [lines[0]] + [ln for ln in lines[1:] if ln.split(b":", 1)[0].strip().decode("latin-1").lower() not in names]
    added = [f"{n}: {v}".encode("latin-1") for n, v in headers.items()] + [b"Connection: close"]
    return b"\r\n".join(kept + added) + b"\r\n\r\n" + body


def http_host(data: bytes) -> str | None:
    for line in data.split(b"\r\n")[1:]:
        if not line:
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            host = value.strip().decode("latin-1")
            return host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return None


def sni(data: bytes) -> str | None:
    """The server name of a TLS ClientHello, or None (incomplete or absent)."""
    try:
        if data[0] != 0x16 or data[5] != 0x01:
            return None
        pos = 5 + 4 + 2 + 32
        pos += 1 + data[pos]  # session id
        pos += 2 + struct.unpack("!H", data[pos : pos + 2])[0]  # cipher suites
        pos += 1 + data[pos]  # compression
        end = pos + 2 + struct.unpack("!H", data[pos : pos + 2])[0]
        pos += 2
        while pos + 4 <= end:
            kind, length = struct.unpack("!HH", data[pos : pos + 4])
            pos += 4
            if kind == 0:
                name_len = struct.unpack("!H", data[pos + 3 : pos + 5])[0]
                return data[pos + 5 : pos + 5 + name_len].decode("ascii").lower()
            pos += length
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    return None


_local = threading.local()


def _buffers() -> tuple[bytearray, bytearray]:
    """This thread's two relay buffers, one per direction (made once: a thread relays one connection at a time)."""
    bufs: tuple[bytearray, bytearray] | None = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = (bytearray(CHUNK), bytearray(CHUNK))
    return bufs


def splice(a: socket.socket, b: socket.socket, ahead: bytes = b"", later: Callable[[], None] | None = None) -> None:
    """Copy both ways (``ahead`` first, to ``b``) until both directions ended or either side fails.

    Plain sockets: in this one thread, non-blocking, woken by one ``poll`` for whichever side has data:
    a second thread for the return direction had to be woken and scheduled too, which on a busy machine
    held up the server's first answer. A direction whose receiver cannot take more stops reading until it
    can; at one side's end the other's write side is shut. ``later`` runs once the first bytes went on
    (work kept off their way). TLS sockets (header injection) go by :func:`relay`.
    """
    if isinstance(a, ssl.SSLSocket) or isinstance(b, ssl.SSLSocket):
        if later is not None:
            later()
        relay(a, b)
        return
    peer = {a: b, b: a}
    first, second = _buffers()
    bufs = {a: memoryview(first), b: memoryview(second)}
    #: bytes read from a socket that its peer has not taken yet
    pending: dict[socket.socket, memoryview] = {a: memoryview(ahead)} if ahead else {}
    reading = {a, b}  # sockets whose read side has not ended
    by_fd = {a.fileno(): a, b.fileno(): b}
    poller = select.poll()
    masks = {a: 0, b: 0}

    changed = True  # what to wait for changed

    def flush(src: socket.socket) -> None:
        nonlocal changed
        data = pending[src]
        try:
            rest = data[peer[src].send(data) :]
        except BlockingIOError:
            return
        if rest:
            pending[src] = rest
            return
        del pending[src]
        changed = True
        if src not in reading:
            peer[src].shutdown(socket.SHUT_WR)

    def read(src: socket.socket) -> None:
        nonlocal changed
        try:
            n = src.recv_into(bufs[src])
        except BlockingIOError:
            return
        if not n:
            reading.discard(src)
            changed = True
            peer[src].shutdown(socket.SHUT_WR)
            return
        data = bufs[src][:n]
        try:  # mostly the peer takes it all at once
            sent = peer[src].send(data)
        except BlockingIOError:
            sent = 0
        if sent < n:
            pending[src] = data[sent:]
            changed = True

    try:
        for s in (a, b):
            s.setblocking(False)
        while reading or pending:
            for s in (a, b) if changed else ():
                mask = (select.POLLIN if s in reading and s not in pending else 0) | (
                    select.POLLOUT if peer[s] in pending else 0
                )
                if mask != masks[s]:  # (no system call: poll's set is kept here)
                    if mask:
                        poller.register(s, mask)
                    else:
                        poller.unregister(s)
                    masks[s] = mask
            changed = False
            for fd, events in poller.poll():
                s = by_fd[fd]
                if peer[s] in pending and events & (select.POLLOUT | select.POLLERR | select.POLLHUP):
                    flush(peer[s])
                if s in reading and s not in pending and events & (select.POLLIN | select.POLLERR | select.POLLHUP):
                    read(s)
            if later is not None:
                _call(later)
                later = None
    except OSError:  # a reset on either side ends both
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
    finally:
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.close()
        if later is not None:
            _call(later)


def _call(work: Callable[[], None]) -> None:
    """``work()``; its failure is said, and goes no further."""
    try:
        work()
    except Exception as exc:
        say(f"relay error: {type(exc).__name__}")


def relay(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways between sockets of which one is TLS, until either side ends."""
    for s in (a, b):
        s.settimeout(None)
    open_ = {a: b, b: a}
    try:
        while open_:
            ready: list[socket.socket] = [s for s in open_ if isinstance(s, ssl.SSLSocket) and s.pending()]
            if not ready:
                ready, _, _ = select.select(list(open_), [], [], 3600)
                if not ready:
                    return
            for s in ready:
                data = s.recv(262144)
                peer = open_[s]
                if data:
                    peer.sendall(data)
                    continue
                del open_[s]
                if isinstance(peer, ssl.SSLSocket) or isinstance(s, ssl.SSLSocket):
                    return
                with contextlib.suppress(OSError):
                    peer.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.close()


def write_state(name: str, data: bytes) -> None:
    """``/run/sbk/NAME`` (mode 0600) replaced at once, so a reader never sees half of it."""
    path = f"{STATE}/{name}"
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(path + ".tmp", path)


def say(text: str) -> None:
    """One line to stdout in one write (threads' lines never mix; the client reads its acks here)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def acknowledge(path: str, answer: str) -> None:
    """Answer the client waiting on the FIFO ``path`` (it opened it before asking; gone: nobody waits)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, answer.encode() + b"\n")
        finally:
            os.close(fd)


def reset(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()


def forbidden(conn: socket.socket, host: str) -> None:
    body = f"sandboxkit egress: {host or 'this destination'} is not allowed by the sandbox's network policy\n"
    with contextlib.suppress(OSError):
        conn.sendall(
            f"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n{body}".encode()
        )
        # unread request bytes would turn close() into a reset that can overtake the answer: drain a little
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(1)
        for _ in range(16):
            if not conn.recv(65536):
                break
    with contextlib.suppress(OSError):
        conn.close()


def iptables(*args: str, table: str = "filter") -> None:
    subprocess.run(["iptables", "-w", "-t", table, *args], check=True)


def interface_of(address: str) -> str:
    for name in os.listdir("/sys/class/net"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                req = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
            except OSError:
                continue
        if socket.inet_ntoa(req[20:24]) == address:
            return name
    raise SystemExit(f"no interface has {address}")


def run(*argv: str) -> None:
    subprocess.run(argv, check=True)


def firewall(address: str, subnet: str) -> None:
    """The tunnel to the sandbox; everything from it comes here; nothing is forwarded but UDP/ICMP to CIDRs."""
    dev = interface_of(address)
    sandbox = str(ipaddress.ip_network(subnet)[3])
    run(
        "ip",
        "link",
        "add",
        "sbk0",
        "type",
        "vxlan",
        "id",
        "1",
        "remote",
        sandbox,
        "local",
        address,
        "dstport",
        str(VXLAN_PORT),
        "dev",
        dev,
    )
    run("ip", "addr", "add", f"{LINK_EGRESS}/30", "dev", "sbk0")
    run("ip", "link", "set", "sbk0", "mtu", "1450", "up")
    for src in (dev, "sbk0"):
        for proto, port in (("udp", "53"), ("tcp", str(LISTEN_PORT))):
            match = ["-p", proto] + (["--dport", "53"] if proto == "udp" else [])
            iptables("-A", "PREROUTING", "-i", src, *match, "-j", "REDIRECT", "--to-ports", port, table="nat")
    iptables("-A", "POSTROUTING", "-s", f"{LINK_SANDBOX}/32", "-j", "MASQUERADE", table="nat")
    iptables("-N", "SBK_FWD")
    iptables("-A", "FORWARD", "-i", "sbk0", "-j", "SBK_FWD")
    iptables("-A", "FORWARD", "-i", dev, "-j", "REJECT", "--reject-with", "icmp-admin-prohibited")
    iptables("-A", "FORWARD", "-o", "sbk0", "-m", "state", "--state", "ESTABLISHED,RELATED", "-j", "ACCEPT")
    iptables("-A", "FORWARD", "-o", "sbk0", "-j", "DROP")
    iptables("-A", "FORWARD", "-o", dev, "-j", "DROP")
    iptables("-A", "INPUT", "-i", dev, "-s", sandbox, "-p", "udp", "--dport", str(VXLAN_PORT), "-j", "ACCEPT")
    for src in (dev, "sbk0"):
        iptables("-A", "INPUT", "-i", src, "-p", "tcp", "--dport", str(LISTEN_PORT), "-j", "ACCEPT")
        iptables("-A", "INPUT", "-i", src, "-p", "udp", "--dport", "53", "-j", "ACCEPT")
        iptables("-A", "INPUT", "-i", src, "-m", "state", "--state", "ESTABLISHED,RELATED", "-j", "ACCEPT")
        iptables("-A", "INPUT", "-i", src, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset")
        iptables("-A", "INPUT", "-i", src, "-j", "REJECT", "--reject-with", "icmp-port-unreachable")


def main() -> None:
    address, subnet, expires = sys.argv[1], sys.argv[2], float(sys.argv[3])
    os.makedirs(f"{STATE}/certs", mode=0o700, exist_ok=True)
    open(EVENTS, "a").close()
    os.mkfifo(CTL, 0o600)
    agent = Agent(address, subnet, expires)
    firewall(address, subnet)
    try:  # a client that wrote the policy before ``ctl`` existed waits for ``loaded`` instead
        agent.reload()
    except Exception as exc:
        say(f"policy not loaded: {type(exc).__name__}")
    if agent.cidrs is None:
        agent.firewall_cidrs(agent.policy)
    for listen in agent.listen:
        for target in (agent.serve_dns, agent.serve_tcp):
            threading.Thread(target=target, args=(listen,), daemon=True).start()
    threading.Thread(target=agent.serve_ctl, daemon=True).start()
    threading.Thread(target=agent.serve_stdin, daemon=True).start()
    say(f"egress up on {address}")
    sandbox = str(ipaddress.ip_network(subnet)[3])
    seen, misses = False, 0
    while time.time() < expires and misses < 3:  # ends with the sandbox's lifetime, or soon after it is gone
        alive = sandbox_alive(sandbox)
        # seen: it answered once, or its client told us a policy (after starting it): a sandbox removed
        # before the first probe answered must end its egress too
        seen = seen or alive or agent.told
        misses = 0 if alive else misses + seen
        time.sleep(2)
    say("egress done: the sandbox ended")


def sandbox_alive(address: str) -> bool:
    """A live sandbox's kernel answers a connection attempt (refused or accepted); a gone one never does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        return s.connect_ex((address, 9)) in (0, errno.ECONNREFUSED)


if __name__ == "__main__":
    main()
