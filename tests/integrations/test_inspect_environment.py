"""The "sandboxkit" inspect sandbox beyond inspect's self-check: config, limits, errors, cleanup."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from inspect_ai.util import (
    SandboxEnvironment,
    SandboxEnvironmentSpec,
    SandboxUnavailableError,
    override_sandbox_output_limit,
)
from inspect_ai.util._sandbox.events import SandboxEnvironmentProxy
from pydantic import ValidationError

from sandboxkit import AsyncSandbox, SandboxError
from sandboxkit.integrations.inspect_ai import SandboxkitConfig, SandboxkitSandboxEnvironment

ENV = SandboxkitSandboxEnvironment


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(docker_engine: object) -> AsyncIterator[SandboxkitSandboxEnvironment]:
    config = SandboxkitConfig(provider="docker", workdir="/work")
    envs = await ENV.sample_init("env_tests", config, {})
    try:
        environment = envs["default"]
        assert isinstance(environment, SandboxkitSandboxEnvironment)
        yield environment
    finally:
        await ENV.sample_cleanup("env_tests", config, envs, False)


async def _eval_sandboxes() -> list[str]:
    return [info.id for info in await AsyncSandbox.list("docker", labels={"inspect": "1"})]


def test_entry_point_registers_the_sandbox_type() -> None:
    code = (
        "from inspect_ai.util._sandbox.registry import registry_find_sandboxenv as find\n"
        "print(find('sandboxkit').__qualname__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "SandboxkitSandboxEnvironment"


def test_config_from_a_task_dict_validates_and_hashes() -> None:
    spec = SandboxEnvironmentSpec("sandboxkit", {"provider": "docker", "cpu": 1, "env": {"A": "1"}})  # type: ignore[arg-type]
    assert isinstance(spec.config, SandboxkitConfig)
    assert spec.config.create_options()["env"] == {"A": "1"}
    assert spec.config.provider == "docker"
    assert hash(spec) == hash(SandboxEnvironmentSpec("sandboxkit", {"provider": "docker", "cpu": 1, "env": {"A": "1"}}))  # type: ignore[arg-type]
    # an eval log stores every field; reading it back must work
    assert SandboxkitConfig(**spec.config.model_dump()) == spec.config
    for bad in ({"name": "one"}, {"auth": {"token": "x"}}, {"imgae": "typo"}, {"cpu": -1}):
        with pytest.raises(ValidationError):
            SandboxkitConfig(**bad)


async def test_task_init_rejects_an_unknown_provider() -> None:
    with pytest.raises(SandboxError) as info:
        await ENV.task_init("t", SandboxkitConfig(provider="no-such-provider"))
    assert info.value.code == "PROVIDER_NOT_FOUND"
    with pytest.raises(ValueError, match="config dict"):
        await ENV.task_init("t", "compose.yaml")


async def test_relative_paths_and_cwd_resolve_to_the_working_dir(env: SandboxkitSandboxEnvironment) -> None:
    await env.write_file("sub/note.txt", "hello")
    assert (await env.exec(["cat", "/work/sub/note.txt"])).stdout == "hello"
    assert (await env.exec(["pwd"], cwd="sub")).stdout == "/work/sub\n"
    assert await env.read_file("sub/note.txt") == "hello"


async def test_crlf_and_binary_content_survive(env: SandboxkitSandboxEnvironment) -> None:
    await env.write_file("crlf.txt", "a\r\nb\r\n")
    assert await env.read_file("crlf.txt") == "a\r\nb\r\n"
    await env.write_file("bad.bin", b"\xff\xfe\x00")
    with pytest.raises(UnicodeDecodeError):
        await env.read_file("bad.bin")
    assert await env.read_file("bad.bin", text=False) == b"\xff\xfe\x00"


async def test_exec_output_keeps_the_last_bytes_of_each_stream_like_inspects_docker(
    env: SandboxkitSandboxEnvironment,
) -> None:
    script = "seq 1 2000; seq 5001 7000 >&2"
    full = await env.exec(["sh", "-c", script])
    with override_sandbox_output_limit(1000, "exec"):
        direct = await env.exec(["sh", "-c", script])
        proxied = await SandboxEnvironmentProxy(env).exec(["sh", "-c", script])
    for result in (direct, proxied):
        assert result.success
        assert result.stdout == full.stdout[-1000:]
        assert result.stderr == full.stderr[-1000:]


async def test_timeout_raises_with_the_partial_output(env: SandboxkitSandboxEnvironment) -> None:
    with pytest.raises(TimeoutError) as info:
        await env.exec(["sh", "-c", "echo partial; sleep 20"], timeout=1)
    assert str(info.value) == "Command timed out after 1 seconds"
    assert info.value.truncated_output == "partial\n"  # type: ignore[attr-defined]


async def test_network_is_blocked_by_default_and_on_request_only(docker_engine: object) -> None:
    async def interfaces(config: SandboxkitConfig | None) -> set[str]:
        envs = await ENV.sample_init("net", config, {})
        try:
            out = (await envs["default"].exec(["cat", "/proc/net/dev"])).stdout
        finally:
            await ENV.sample_cleanup("net", config, envs, False)
        return {line.split(":")[0].strip() for line in out.splitlines()[2:]}

    assert await interfaces(None) == {"lo"}  # sandbox="sandboxkit": every default, provider docker
    assert await interfaces(SandboxkitConfig(provider="docker", block_network=False)) > {"lo"}


async def test_exec_on_a_sandbox_that_is_gone_raises_unavailable(docker_engine: object) -> None:
    config = SandboxkitConfig(provider="docker")
    envs = await ENV.sample_init("gone", config, {})
    environment = envs["default"]
    assert isinstance(environment, SandboxkitSandboxEnvironment)
    await (await AsyncSandbox.from_id(environment.sandbox.id, "docker")).close()
    with pytest.raises(SandboxUnavailableError):
        await environment.exec(["true"])
    await ENV.sample_cleanup("gone", config, envs, False)


async def test_task_cleanup_and_cli_cleanup_remove_leftovers(
    docker_engine: object, capsys: pytest.CaptureFixture[str]
) -> None:
    config = SandboxkitConfig(provider="docker")
    leftovers: list[SandboxEnvironment] = []
    for _ in range(3):
        leftovers += (await ENV.sample_init("leaky", config, {})).values()
    ids = [e.sandbox.id for e in leftovers if isinstance(e, SandboxkitSandboxEnvironment)]
    assert set(ids) <= set(await _eval_sandboxes())

    await ENV.task_cleanup("leaky", config, cleanup=False)  # --no-sandbox-cleanup: keep, and say how to remove
    assert set(ids) <= set(await _eval_sandboxes())
    assert f"inspect sandbox cleanup sandboxkit docker:{ids[0]}" in capsys.readouterr().err

    await ENV.cli_cleanup(f"docker:{ids[0]}")
    assert ids[0] not in await _eval_sandboxes()
    await ENV.cli_cleanup(None)
    assert not set(ids) & set(await _eval_sandboxes())


async def test_task_cleanup_closes_what_sample_cleanup_missed(docker_engine: object) -> None:
    config = SandboxkitConfig(provider="docker")
    envs = await ENV.sample_init("crashy", config, {})
    environment = envs["default"]
    assert isinstance(environment, SandboxkitSandboxEnvironment)
    await ENV.task_cleanup("crashy", config, cleanup=True)
    assert environment.sandbox.id not in await _eval_sandboxes()


async def test_connection_is_a_sandboxkit_shell_with_the_published_ports(docker_engine: object) -> None:
    config = SandboxkitConfig(provider="docker", ports=[8000])
    envs = await ENV.sample_init("conn", config, {})
    try:
        environment = envs["default"]
        assert isinstance(environment, SandboxkitSandboxEnvironment)
        connection = await environment.connection(user="nobody")
        sandbox_id = environment.sandbox.id
        assert connection.command == f"sandboxkit shell --provider docker --user nobody {sandbox_id}"
        assert connection.ports is not None and [p.container_port for p in connection.ports] == [8000]
        tunnel = (await environment.sandbox.tunnels())[8000]
        assert connection.ports[0].mappings[0].host_port == tunnel.host_port
        shell = subprocess.run(
            [sys.executable, "-m", "sandboxkit.cli", "shell", "--user", "nobody", sandbox_id, "--", "id", "-un"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert (shell.returncode, shell.stdout.strip()) == (0, "nobody"), shell.stderr
    finally:
        await ENV.sample_cleanup("conn", config, envs, False)
