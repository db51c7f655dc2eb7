"""A deep agent whose files and shell live in a sandboxkit sandbox, on any provider.

    python examples/deepagents_agent.py                      # Docker, scripted stand-in model (offline)
    python examples/deepagents_agent.py --provider modal     # same agent, a Modal sandbox
    python examples/deepagents_agent.py --model anthropic:claude-sonnet-4-5   # a real model

Without --model the agent is driven by a scripted stand-in chat model (no LLM is needed or
contacted): it asks the agent's tools to write a Python file and run it. Everything the tools
do is real: the file is written into the sandbox and run there, and the output the agent sees
comes from the sandbox.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from typing import Any

from deepagents import create_deep_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage

from sandboxkit import Sandbox
from sandboxkit.integrations.deepagents import SandboxkitBackend

TASK = "Write /workspace/fib.py that prints the first 10 Fibonacci numbers, run it, and report the output."

SCRIPT = """a, b = 0, 1
for _ in range(10):
    print(a, end=" ")
    a, b = b, a + b
print()
"""


class ScriptedChatModel(GenericFakeChatModel):
    """A stand-in chat model that replays fixed replies (tool calls included) and accepts tools."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        return self


def scripted_replies() -> Iterator[AIMessage]:
    """What a model would answer for TASK: write the file, run it, then report."""
    yield AIMessage(
        content="",
        tool_calls=[
            {"id": "call-1", "name": "write_file", "args": {"file_path": "/workspace/fib.py", "content": SCRIPT}}
        ],
    )
    yield AIMessage(
        content="", tool_calls=[{"id": "call-2", "name": "execute", "args": {"command": "python3 /workspace/fib.py"}}]
    )
    yield AIMessage(content="I wrote /workspace/fib.py and ran it; its output is above.")


def run(provider: str | None = None, model: Any = None) -> list[BaseMessage]:
    """Run the agent on TASK in a fresh sandbox; returns the conversation."""
    with Sandbox.create(provider, workdir="/workspace", timeout=600) as sandbox:
        agent = create_deep_agent(
            model=model or ScriptedChatModel(messages=scripted_replies()),
            backend=SandboxkitBackend(sandbox),
            system_prompt="You are a careful programmer. Work inside /workspace.",
        )
        state = agent.invoke({"messages": [{"role": "user", "content": TASK}]})
        return list(state["messages"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider", help="sandboxkit provider (default: $SANDBOXKIT_PROVIDER, else docker)")
    parser.add_argument("--model", help="a real chat model, e.g. anthropic:claude-sonnet-4-5 (default: scripted)")
    args = parser.parse_args()
    for message in run(args.provider, args.model):
        text = message.content if isinstance(message.content, str) else str(message.content)
        calls = getattr(message, "tool_calls", None)
        print(f"[{message.type}] {text.strip()}" + (f" {calls}" if calls else ""))


if __name__ == "__main__":
    main()
