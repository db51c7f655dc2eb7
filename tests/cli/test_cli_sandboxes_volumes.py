"""``sandboxkit ls|rm|gc`` and ``sandboxkit volume create|ls|rm`` against the real Docker engine."""

from __future__ import annotations

import json
import uuid

import pytest

from sandboxkit import Sandbox
from sandboxkit._async_sandbox import env_labels
from sandboxkit.cli import main

pytestmark = pytest.mark.usefixtures("docker_engine")


def _label() -> str:
    ((key, value),) = env_labels().items()
    return f"{key}={value}"


def test_ls_shows_a_live_sandbox_and_rm_ends_it(capsys: pytest.CaptureFixture[str]) -> None:
    tag = uuid.uuid4().hex[:8]
    sb = Sandbox.create(tags={"cli": tag}, name=f"cli-{tag}", app="sbk-cli-test")
    try:
        assert main(["ls", "--json", "--tag", f"cli={tag}", "--label", _label()]) == 0
        (row,) = json.loads(capsys.readouterr().out)
        assert (row["id"], row["name"], row["app"], row["state"], row["tags"]) == (
            sb.id,
            f"cli-{tag}",
            "sbk-cli-test",
            "running",
            {"cli": tag},
        )
        assert main(["ls", "--app", "sbk-cli-test", "--label", _label()]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split() == ["ID", "NAME", "APP", "STATE", "CREATED", "TAGS"]
        assert table[1].startswith(sb.id[:12])
        assert f"cli={tag}" in table[1]
        assert main(["rm", sb.id]) == 0
        assert capsys.readouterr().out == f"{sb.id}\n"
        assert main(["ls", "--json", "--tag", f"cli={tag}"]) == 0
        assert json.loads(capsys.readouterr().out) == []
        assert main(["rm", sb.id]) == 3
        assert "SANDBOX_NOT_FOUND" in capsys.readouterr().err
    finally:
        sb.close()


def test_gc_keeps_sandboxes_whose_owner_lives(capsys: pytest.CaptureFixture[str]) -> None:
    with Sandbox.create():
        assert main(["gc", "--dry-run", "--json", "--label", _label()]) == 0
        assert json.loads(capsys.readouterr().out) == []
    with pytest.raises(SystemExit) as usage:  # like argparse's own usage errors
        main(["gc", "--label", "no-such-label"])
    assert usage.value.code == 2


def test_volume_create_ls_rm(capsys: pytest.CaptureFixture[str]) -> None:
    name = f"sbk-cli-{uuid.uuid4().hex[:8]}"
    assert main(["volume", "create", name]) == 0
    try:
        assert main(["volume", "create", name]) == 3
        assert "ALREADY_EXISTS" in capsys.readouterr().err
        assert main(["volume", "ls", "--json"]) == 0
        rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
        assert rows[name]["managed"] is True
        assert rows[name]["provider"] == "docker"
        assert main(["volume", "ls"]) == 0
        assert name in capsys.readouterr().out
        with Sandbox.create(volumes={"/v": name}) as sb:
            sb.execute("echo kept > /v/f", check=True)
            assert main(["volume", "rm", name]) == 3
            assert "in use" in capsys.readouterr().err
    finally:
        assert main(["volume", "rm", name]) == 0
    assert main(["volume", "rm", name]) == 3
    assert "VOLUME_ERROR" in capsys.readouterr().err
