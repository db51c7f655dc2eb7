"""``sandboxkit create --port``, ``create --snapshot`` and ``sandboxkit snapshot create|ls|rm``: real CLI processes."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

from sandboxkit import Sandbox


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandboxkit.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_create_with_a_port_prints_its_url_and_snapshots_round_trip(docker_engine: object) -> None:
    created = cli("create", "--port", "8000", "--timeout", "300")
    assert created.returncode == 0, created.stderr
    sandbox_id = created.stdout.strip()
    made = [sandbox_id]
    try:
        assert "\n" not in sandbox_id, "stdout must hold the id alone"
        url = created.stderr.strip().splitlines()[-1].removeprefix("port 8000: ")
        assert url.startswith("http://127.0.0.1:"), created.stderr
        sandbox = Sandbox.from_id(sandbox_id, "docker")
        sandbox.write_file("/srv/index.html", "from the cli")
        sandbox.execute("cd /srv && nohup python3 -m http.server 8000 >/dev/null 2>&1 &")
        sandbox.wait_for_port(8000, timeout=60)
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == b"from the cli"

        snap = cli("snapshot", "create", sandbox_id, "--ttl", "600")
        assert snap.returncode == 0, snap.stderr
        snap_id = snap.stdout.strip()
        listed = json.loads(cli("snapshot", "ls", "--json").stdout)
        assert snap_id in [row["id"] for row in listed]

        started = cli("create", "--snapshot", snap_id, "--json")
        assert started.returncode == 0, started.stderr
        info = json.loads(started.stdout)
        made.append(info["id"])
        assert info["urls"] == {}
        assert Sandbox.from_id(info["id"], "docker").read_file("/srv/index.html") == b"from the cli"

        in_use = cli("snapshot", "rm", snap_id)
        assert in_use.returncode == 3 and "INVALID_ARGUMENT" in in_use.stderr
        assert cli("rm", info["id"]).returncode == 0
        made.remove(info["id"])
        assert cli("snapshot", "rm", snap_id).returncode == 0
        assert snap_id not in [row["id"] for row in json.loads(cli("snapshot", "ls", "--json").stdout)]
    finally:
        for sid in made:
            cli("rm", sid)
