#!/usr/bin/env bash
# Proves on a GPU host that gpu= sandboxes see the device, on each local provider present (docker
# when an engine answers, bwrap when bubblewrap is installed): a gpu="H100" sandbox (or the type
# given, `scripts/gpu-check.sh A100`) runs `nvidia-smi` and, when its image has PyTorch, a CUDA
# call. Prints PASS/FAIL per provider; exits 1 on any FAIL, 2 on a host with no NVIDIA GPU (it is
# not run in CI). Uses the repo's .venv (scripts/setup.sh). The image is $GPU_CHECK_IMAGE (default
# sandboxkit/base:bookworm, which has no PyTorch: give one that has, to check a CUDA call too).
set -euo pipefail
cd "$(dirname "$0")/.."

gpu=${1:-H100}
image=${GPU_CHECK_IMAGE:-sandboxkit/base:bookworm}
python=.venv/bin/python

fail() { printf 'gpu-check: %s\n' "$*" >&2; exit 2; }

shopt -s nullglob
nodes=(/dev/nvidia[0-9]*)
shopt -u nullglob
if [ ${#nodes[@]} -eq 0 ]; then
  fail "no NVIDIA GPU on this host (no /dev/nvidia<N> device nodes; is the driver loaded?): run it on a GPU machine"
fi
[ -x "$python" ] || fail "no virtualenv at $PWD/.venv: run scripts/setup.sh first"

providers=()
if "$python" -c 'import docker, sys; sys.exit(0 if docker.from_env(timeout=5).ping() else 1)' 2>/dev/null; then
  providers+=(docker)
else
  echo "SKIP docker: no Docker engine answers"
fi
if command -v bwrap >/dev/null; then
  providers+=(bwrap)
else
  echo "SKIP bwrap: bubblewrap is not installed"
fi
[ ${#providers[@]} -gt 0 ] || fail "neither a Docker engine nor bubblewrap is here: nothing to check"

# Real GPUs only: a simulate switch left set would make a GPU-less sandbox pass.
export SANDBOXKIT_DOCKER_GPU=auto SANDBOXKIT_BWRAP_GPU=auto
exec "$python" - "$gpu" "$image" "${providers[@]}" <<'EOF'
"""One gpu= sandbox per provider: nvidia-smi, and a CUDA call when the image has PyTorch."""

import sys

from sandboxkit import Sandbox, SandboxError

TORCH = (
    "import torch; assert torch.cuda.is_available(); "
    'print(torch.cuda.get_device_name(0), (torch.ones(2,device="cuda")*2).sum().item())'
)


def check(provider: str, gpu: str, image: str) -> str:
    """What the sandbox saw; raises AssertionError (or SandboxError) on a failure."""
    options = {"gpu_mode": "auto"}
    with Sandbox.create(provider=provider, image=image, gpu=gpu, timeout=900, provider_options=options) as sb:
        simulated = sb.execute("printenv SANDBOXKIT_GPU_SIMULATED").stdout.strip()
        assert not simulated, "the GPUs are simulated, not real"
        smi = sb.execute("nvidia-smi -L && nvidia-smi", timeout=120)
        assert smi.exit_code == 0, f"nvidia-smi failed (exit {smi.exit_code}): {smi.output[-500:]}"
        seen = [line for line in smi.stdout.splitlines() if line.startswith("GPU ")]
        assert seen, f"nvidia-smi lists no GPU: {smi.output[-500:]}"
        if sb.execute("python3 -c 'import torch'", timeout=300).exit_code != 0:
            return f"{seen[0]}; no PyTorch in {image}, CUDA call not checked"
        cuda = sb.execute(["python3", "-c", TORCH], timeout=600)
        assert cuda.exit_code == 0, f"the CUDA call failed: {cuda.output[-800:]}"
        return f"{seen[0]}; torch: {cuda.stdout.strip()}"


def main() -> int:
    gpu, image, *providers = sys.argv[1:]
    failed = 0
    for provider in providers:
        try:
            print(f"PASS {provider}: {check(provider, gpu, image)}", flush=True)
        except (AssertionError, SandboxError) as exc:
            failed += 1
            print(f"FAIL {provider}: {exc}", flush=True)
    return 1 if failed else 0


sys.exit(main())
EOF
