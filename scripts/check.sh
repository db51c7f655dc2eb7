#!/usr/bin/env bash
# Lint, format and type checks over every package, the tests and the shell scripts; CI (.ci/run) and pre-commit run it.
# The Python tools are pinned in requirements-dev.txt (scripts/setup.sh installs them into .venv,
# and Debian's shellcheck).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin

"$bin/ruff" check .
"$bin/ruff" format --check .
# every shell script git tracks (.sh, and .ci/run)
git ls-files -z '*.sh' .ci/run | xargs -0 shellcheck
"$bin/mypy"  # the four packages, as [tool.mypy] in pyproject.toml says
# the tests, one run per directory: each has its own conftest.py (mypy refuses two modules of one name)
for tests in "conftest.py tests/*.py tests/cli" tests/faults tests/integrations tests/memory tests/security \
  "plugins/docker/tests --exclude plugins/docker/tests/runsc" plugins/docker/tests/runsc plugins/bwrap/tests \
  "plugins/modal/tests/*.py" plugins/modal/tests/live conformance/tests conformance/examples/sandboxkit-dockercli; do
  # shellcheck disable=SC2086  # each entry is a list of paths
  "$bin/mypy" --no-error-summary $tests
done
echo "checks passed: ruff, ruff format, shellcheck, mypy (packages and tests)"
