"""An inspect_ai eval whose samples run in sandboxkit sandboxes, on any provider.

    python examples/inspect_eval.py                          # Docker, inspect's mockllm model (offline)
    python examples/inspect_eval.py --provider modal         # same eval, Modal sandboxes
    python examples/inspect_eval.py --model anthropic/claude-sonnet-4-5   # a real model

Each sample gets a fresh sandbox with the sample's files in its working directory; the model
uses inspect's ``bash`` tool to run the program, and the scorer reads the answer file back out
of the sandbox. Without --model, inspect's ``mockllm`` model plays a fixed script (the tool
call, then an answer), so no LLM is needed; the tool call, the program run and the file the
scorer reads are real.
"""

from __future__ import annotations

import argparse
from typing import Any

from inspect_ai import Task, eval, task
from inspect_ai.dataset import Sample
from inspect_ai.log import EvalLog
from inspect_ai.model import Model, ModelOutput, ModelUsage, get_model
from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer
from inspect_ai.solver import TaskState, generate, use_tools
from inspect_ai.tool import bash
from inspect_ai.util import sandbox

COMMAND = "python3 sum.py > answer.txt && cat answer.txt"


@scorer(metrics=[accuracy()])
def answer_file() -> Any:
    """Correct when answer.txt, read back from the sample's sandbox, holds the target."""

    async def score(state: TaskState, target: Target) -> Score:
        try:
            answer = (await sandbox().read_file("answer.txt")).strip()
        except FileNotFoundError:
            return Score(value=INCORRECT, explanation="answer.txt was never written")
        return Score(value=CORRECT if answer == target.text else INCORRECT, answer=answer)

    return score


@task
def sum_in_sandbox(provider: str | None = None, image: str | None = None) -> Task:
    """Run a small program inside the sandbox and check what it wrote."""
    config: dict[str, Any] = {"provider": provider} if provider else {}
    if image:
        config["image"] = image
    samples = [
        Sample(
            id=f"sum-{n}",
            input="Run sum.py with python3, save its output to answer.txt, and tell me the number.",
            target=str(sum(range(n))),
            files={"sum.py": f"print(sum(range({n})))\n"},
        )
        for n in (10, 100)
    ]
    return Task(
        dataset=samples,
        solver=[use_tools(bash(timeout=60)), generate()],
        scorer=answer_file(),
        # ("sandboxkit", {...options}); plain "sandboxkit" for all defaults (inspect needs a non-empty dict)
        sandbox=("sandboxkit", config) if config else "sandboxkit",  # type: ignore[arg-type]
    )


def scripted_model() -> Model:
    """inspect's mockllm playing a model: one bash call per sample, then an answer."""
    outputs = []
    for _ in range(2):
        outputs.append(ModelOutput.for_tool_call("mockllm/model", "bash", {"command": COMMAND}))
        outputs.append(ModelOutput.from_content("mockllm/model", "The answer is in answer.txt."))
    for output in outputs:
        # mockllm estimates missing usage with tiktoken, which downloads its tables: stay offline
        output.usage = ModelUsage(input_tokens=100, output_tokens=20, total_tokens=120)
    return get_model("mockllm/model", custom_outputs=outputs)


def run(provider: str | None = None, model: str | Model | None = None, log_dir: str | None = None) -> EvalLog:
    """Run the eval (one sample at a time, so the scripted replies pair up with their sample)."""
    (log,) = eval(
        sum_in_sandbox(provider),
        model=model or scripted_model(),
        max_samples=1,
        log_dir=log_dir,
        display="none",
    )
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider", help="sandboxkit provider (default: $SANDBOXKIT_PROVIDER, else docker)")
    parser.add_argument("--model", help="an inspect model, e.g. anthropic/claude-sonnet-4-5 (default: mockllm)")
    parser.add_argument("--log-dir", help="where inspect writes the eval log (default: ./logs)")
    args = parser.parse_args()
    log = run(args.provider, args.model, args.log_dir)
    print(f"status={log.status}")
    for sample in log.samples or []:
        score = next(iter((sample.scores or {}).values()), None)
        print(
            f"{sample.id}: target={sample.target} answer={score.answer if score else None} "
            f"score={score.value if score else None}"
        )


if __name__ == "__main__":
    main()
