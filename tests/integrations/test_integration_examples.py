"""The runnable examples in examples/ complete their task offline."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_deep_agent_writes_and_runs_a_file_in_a_docker_sandbox(docker_engine: object) -> None:
    # The chat model is a scripted stand-in (no LLM can be reached here): it only emits the tool
    # calls. The file write, the run and the output below happen in a real Docker sandbox.
    example = _load("deepagents_agent")
    messages = example.run("docker")
    tool_results = [m for m in messages if m.type == "tool"]
    assert [m.name for m in tool_results] == ["write_file", "execute"]
    assert tool_results[0].status == "success"
    assert "0 1 1 2 3 5 8 13 21 34" in tool_results[1].content
    assert "[Command succeeded with exit code 0]" in tool_results[1].content
    assert messages[-1].type == "ai"
    assert not messages[-1].tool_calls


async def test_deep_agent_runs_async_too(docker_engine: object) -> None:
    # ainvoke drives deepagents' async tool path (aexecute, aupload_files, ...); stand-in model as above
    from deepagents import create_deep_agent

    from sandboxkit import Sandbox
    from sandboxkit.integrations.deepagents import SandboxkitBackend

    example = _load("deepagents_agent")
    with Sandbox.create("docker", workdir="/workspace", timeout=300) as sandbox:
        agent = create_deep_agent(
            model=example.ScriptedChatModel(messages=example.scripted_replies()), backend=SandboxkitBackend(sandbox)
        )
        state = await agent.ainvoke({"messages": [{"role": "user", "content": example.TASK}]})
        assert sandbox.read_file("/workspace/fib.py").decode() == example.SCRIPT
    tool_results = [m for m in state["messages"] if m.type == "tool"]
    assert "0 1 1 2 3 5 8 13 21 34" in tool_results[-1].content


def test_inspect_eval_runs_to_completion_offline(docker_engine: object, tmp_path: Path) -> None:
    # inspect's mockllm model plays the model (no LLM can be reached here); the bash tool call, the
    # program run in the sample's sandbox and the answer file the scorer reads back are real.
    from sandboxkit import Sandbox

    example = _load("inspect_eval")
    log = example.run("docker", log_dir=str(tmp_path))
    assert log.status == "success"
    assert [(s.id, s.scores["answer_file"].value, s.scores["answer_file"].answer) for s in log.samples] == [
        ("sum-10", "C", "45"),
        ("sum-100", "C", "4950"),
    ]
    tool_outputs = [m.text for s in log.samples for m in s.messages if m.role == "tool"]
    assert tool_outputs == ["45\n", "4950\n"]
    assert Sandbox.list("docker", labels={"inspect": "1"}) == []  # every sample's sandbox was closed


def test_dev_server_serves_a_page_and_starts_a_copy_from_its_snapshot(docker_engine: object) -> None:
    import subprocess

    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "dev_server.py")], capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert lines[0].startswith("http://127.0.0.1:") and lines[0].endswith("'hello from the sandbox\\n'")
    assert any(line.startswith("copy http://127.0.0.1:") and "hello from the sandbox" in line for line in lines)
    assert "server exit code: 143" in lines


def test_allowlisted_agent_reaches_its_api_only_and_never_sees_its_key(
    docker_engine: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    result = _load("allowlisted_agent").run()
    assert result["api_status"] == 200 and result["api_got_key"]
    assert "error" in result["leak"] and result["key_in_sandbox_env"] == []
    assert any(host == "denied.test" for host, _, _ in result["denied"])
