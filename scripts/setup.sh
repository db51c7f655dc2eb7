#!/usr/bin/env bash
# Installs everything sandboxkit and its tests need on a fresh Debian machine, idempotently:
# the Docker engine (Debian's docker.io, started in the background when no daemon answers),
# gVisor's runsc (registered as the runtime "runsc" with a dockerd this script starts; an engine
# that already runs is never reconfigured: the lines that would add it are printed), debootstrap
# and busybox-static, a virtualenv at .venv with every package of this repo, and the offline base
# images. Needs root for apt and debootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

# Debian packages, one a line; each is installed (after one apt-get update) only when missing.
apt_packages=(
  debootstrap
  busybox-static
  runsc  # gVisor
  bubblewrap  # the bwrap provider,
  slirp4netns  # with its user-mode network
  gcc  # and its command agent, built once from C
  libc6-dev
  libseccomp-dev  # (its seccomp filter is compiled with libseccomp)
  qemu-system-x86  # the bwrap provider's cgroup v2 lane: a guest VM on Debian's kernel (tests/test_bwrap_cgroup2.py)
  shellcheck  # scripts/check.sh lints the shell scripts
)
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)  # any engine will do (docker-ce too)
for pkg in "${apt_packages[@]}"; do installed "$pkg" || need_apt+=("$pkg"); done
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# gVisor's ptrace platform (kvm needs nested virtualisation); --network=host: this runsc build
# (2022) takes every network namespace for the host's on kernels that show net.core.rmem_default
# per namespace (6.x) and refuses its own netstack; with host, the sentry uses the container's
# own namespace (Docker's bridge, or none for block_network), never the host's
RUNSC_ARGS=(--platform=ptrace --network=host)
if ! timeout 5 docker info >/dev/null 2>&1; then
  log "registering runsc (gVisor) in /etc/docker/daemon.json"
  runsc install -- "${RUNSC_ARGS[@]}" >/dev/null
  log "starting dockerd in the background (log: /var/log/sandboxkit-dockerd.log)"
  nohup dockerd >/var/log/sandboxkit-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do timeout 5 docker info >/dev/null 2>&1 && break; sleep 0.5; done
  timeout 5 docker info >/dev/null 2>&1 || { log "dockerd did not come up"; tail -20 /var/log/sandboxkit-dockerd.log >&2; exit 1; }
elif ! timeout 5 docker info --format '{{json .Runtimes}}' | grep -q '"runsc"'; then
  log "this Docker engine has no runsc runtime, and setup does not reconfigure an engine it did not start;"
  log "to run sandboxes under gVisor (provider_options={'runtime': 'runsc'}), run as root:"
  log "  runsc install -- ${RUNSC_ARGS[*]}"
  log "  systemctl restart docker   # or restart your dockerd"
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
pkgs=(-e . -e plugins/docker)
for extra in plugins/modal plugins/bwrap conformance; do [ -f "$extra/pyproject.toml" ] && pkgs+=(-e "$extra"); done
log "pip install ${pkgs[*]} + dev tools"
pip_log=$(mktemp)
if ! .venv/bin/pip install -q "${pkgs[@]}" -r requirements-dev.txt >"$pip_log" 2>&1; then
  log "pip install failed:"; tail -30 "$pip_log" >&2; exit 1
fi
rm -f "$pip_log"
.venv/bin/python -c "import sandboxkit, sandboxkit_docker" || { log "install failed"; exit 1; }

log "offline images"
.venv/bin/sandboxkit images bootstrap --kind busybox >/dev/null
.venv/bin/sandboxkit images bootstrap >/dev/null
# the egress image of network-policy sandboxes (base image + Debian's iptables and iproute2)
.venv/bin/python -c "import docker; from sandboxkit_docker._egress import ensure_image; ensure_image(docker.from_env())"
log "ready"
