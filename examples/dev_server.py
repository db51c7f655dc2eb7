"""A web app in a sandbox: start it, wait for its port, fetch a page from here, snapshot, start a copy.

python examples/dev_server.py                     # Docker
python examples/dev_server.py --provider modal    # Modal (or the emulator: sandboxkit modal-emulator)
"""

from __future__ import annotations

import argparse
import urllib.request

import sandboxkit
from sandboxkit import ErrorCode, Sandbox, SandboxError

APP = """from http.server import BaseHTTPRequestHandler, HTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = open("/srv/app/greeting.txt", "rb").read()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", 8000), Hello).serve_forever()
"""


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default=None)
    args = parser.parse_args()
    image = "python:3.12-slim" if args.provider == "modal" else None

    with Sandbox.create(args.provider, image=image, ports=[8000], timeout=600) as sb:
        sb.write_file("/srv/app/server.py", APP)
        sb.write_file("/srv/app/greeting.txt", "hello from the sandbox\n")
        server = sb.spawn("python3 /srv/app/server.py", cwd="/srv/app")  # keeps running in the background
        sb.wait_for_port(8000, timeout=60)
        print(f"{sb.url(8000)} -> {fetch(sb.url(8000))!r}")
        print("server process:", server.id, "running" if server.poll() is None else "ended")

        snap = sb.snapshot(ttl=3600)  # the app's files, saved; this sandbox keeps running
        print("snapshot:", snap.id)
        with Sandbox.create(args.provider, snapshot=snap, ports=[8000], timeout=600) as copy:
            copy.spawn("python3 /srv/app/server.py", cwd="/srv/app")
            copy.wait_for_port(8000, timeout=60)
            print(f"copy {copy.url(8000)} -> {fetch(copy.url(8000))!r}")
        server.kill()
        print("server exit code:", server.wait(timeout=30).exit_code)
    try:
        snap.delete()
    except SandboxError as exc:  # Modal can neither list nor delete snapshots: they expire by ttl
        if exc.code != ErrorCode.CAPABILITY_NOT_SUPPORTED:
            raise
    print("snapshots left:", [s.id for s in sandboxkit.snapshots(args.provider)] if args.provider != "modal" else "-")


if __name__ == "__main__":
    main()
