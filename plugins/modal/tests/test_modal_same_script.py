"""One user script, switched only by ``provider=``: Docker directly, and Modal (emulated, Docker underneath)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from sandboxkit import ErrorCode, Sandbox, SandboxError

pytestmark = pytest.mark.usefixtures("docker_engine", "modal_env")

SCRIPT = """\
import json, sys
data = json.load(sys.stdin)
print(json.dumps({"sum": sum(data["numbers"]), "greeting": open("/work/greeting.txt").read().strip()}))
print("progress: done", file=sys.stderr)
"""


def user_script(provider: str) -> dict[str, Any]:
    """What an application would do with a sandbox; returns everything it observed."""
    seen: dict[str, Any] = {}
    tag = uuid.uuid4().hex[:8]
    with Sandbox.create(
        provider=provider,
        app="same-script",
        name=f"job-{tag}",
        tags={"job": tag},
        env={"MODE": "batch"},
        workdir="/work",
        initial_files={"/work/main.py": SCRIPT, "/work/greeting.txt": "hello"},
        timeout=300,
    ) as sb:
        r = sb.execute("python3 main.py", stdin=b'{"numbers": [1, 2, 3, 4]}')
        seen["main"] = (r.exit_code, r.stdout, r.stderr)
        r = sb.execute(["sh", "-c", 'echo "$MODE $PWD $1"; exit 5', "sh", "arg with space"], env={"EXTRA": "1"})
        seen["argv"] = (r.exit_code, r.stdout)
        seen["stream"] = "".join(c.text for c in sb.stream("for i in 1 2 3; do echo line $i; done"))
        sb.write_file("/work/out/result.bin", bytes(range(256)))
        seen["roundtrip"] = sb.read_file("/work/out/result.bin") == bytes(range(256))
        seen["upload"] = [r.error for r in sb.upload_files([("/work/a.txt", "A"), ("relative.txt", "x")])]
        seen["download"] = [(r.content, r.error) for r in sb.download_files(["/work/a.txt", "/work/none"])]
        try:
            sb.execute("sleep 30", timeout=1)
        except SandboxError as exc:
            seen["timeout"] = exc.code
        try:
            sb.execute("exit 9", check=True)
        except SandboxError as exc:
            seen["check"] = (exc.code, exc.result.exit_code if exc.result else None)
        listed = Sandbox.list(provider=provider, app="same-script", tags={"job": tag})
        seen["list"] = [(i.name == f"job-{tag}", dict(i.tags) == {"job": tag}, i.state.value) for i in listed]
        again = Sandbox.from_name("same-script", f"job-{tag}", provider=provider)
        seen["from_name"] = again.id == sb.id and again.execute("cat greeting.txt").stdout == "hello"
        seen["from_id"] = Sandbox.from_id(sb.id, provider=provider).execute("echo $MODE").stdout
        sandbox_id = sb.id
    try:
        Sandbox.from_id(sandbox_id, provider=provider)
    except SandboxError as exc:
        seen["after_close"] = exc.code
    return seen


def test_docker_and_modal_agree() -> None:
    docker, modal = user_script("docker"), user_script("modal")
    assert docker == modal
    assert docker["main"] == (0, '{"sum": 10, "greeting": "hello"}\n', "progress: done\n")
    assert docker["timeout"] == ErrorCode.COMMAND_TIMEOUT
    assert docker["after_close"] == ErrorCode.SANDBOX_NOT_FOUND
    assert docker["upload"] == [None, "invalid_path"]
    assert docker["list"] == [(True, True, "running")]
