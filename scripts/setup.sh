#!/usr/bin/env bash
# Installs everything sandboxkit and its tests need on a fresh Debian machine, idempotently:
# the Docker engine (Debian's docker.io, started in the background when no daemon answers),
# debootstrap and busybox-static, a virtualenv at .venv with every package of this repo, and
# the offline base images. Needs root for apt and debootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v bwrap >/dev/null || need_apt+=(bubblewrap)  # the bwrap provider, with slirp4netns for its network
command -v slirp4netns >/dev/null || need_apt+=(slirp4netns)
[ -x /bin/busybox ] && ldd /bin/busybox 2>&1 | grep -q "not a dynamic" || need_apt+=(busybox-static)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! timeout 5 docker info >/dev/null 2>&1; then
  log "starting dockerd in the background (log: /var/log/sandboxkit-dockerd.log)"
  nohup dockerd >/var/log/sandboxkit-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do timeout 5 docker info >/dev/null 2>&1 && break; sleep 0.5; done
  timeout 5 docker info >/dev/null 2>&1 || { log "dockerd did not come up"; tail -20 /var/log/sandboxkit-dockerd.log >&2; exit 1; }
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
pkgs=(-e . -e plugins/docker)
for extra in plugins/modal plugins/bwrap conformance; do [ -f "$extra/pyproject.toml" ] && pkgs+=(-e "$extra"); done
log "pip install ${pkgs[*]} + dev tools"
.venv/bin/pip install -q "${pkgs[@]}" -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location" >&2 || true
.venv/bin/python -c "import sandboxkit, sandboxkit_docker" || { log "install failed"; exit 1; }

log "offline images"
.venv/bin/sandboxkit images bootstrap --kind busybox >/dev/null
.venv/bin/sandboxkit images bootstrap >/dev/null
log "ready"
