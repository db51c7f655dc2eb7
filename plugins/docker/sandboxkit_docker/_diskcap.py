"""Disk caps where the storage driver has none (overlay2 on ext4): the writable layer on its own filesystem.

Between create and start, the warden (in the host's PID namespace, with SYS_ADMIN) enters the
engine's mount namespace and mounts a fresh ext4 filesystem of ``disk_mib`` over the container's
overlay2 layer directory: the upper dir, the work dir (overlayfs wants both on one mount) and
the driver's own files. The filesystem lives in a sparse file in the layer directory, hidden
under the mount: only what the sandbox writes takes host disk, at most the cap, and a writer past
it gets ENOSPC. Removing the container unmounts the layer (the engine unmounts what is mounted
under a layer it deletes), which releases the loop device (``mount -o loop`` sets autoclear),
and deletes the directory with the file. The container's own directory
(``<data-root>/containers/<id>``) gets a filesystem of its own of CONTAINER_DIR_MIB: the engine
bind-mounts ``/etc/hosts``, ``/etc/hostname`` and ``/etc/resolv.conf`` from there, writable by
root inside. It needs ``sh``, ``mkfs.ext4``, ``mount`` and loop devices on the engine's host;
the first create of each provider checks that with a 4 MiB trial.
"""

from __future__ import annotations

from typing import Any

from sandboxkit.spi import ErrorCode, SandboxError
from sandboxkit_docker import _warden
from sandboxkit_docker._errors import PROVIDER

#: the last line of a successful run
OK = "sandboxkit-disk: ok"

#: the cap on the container's own directory (hosts, hostname, resolv.conf, log, config), MiB
CONTAINER_DIR_MIB = 16

#: Runs on the engine's host, in its mount namespace: ``probe DIR`` (a 4 MiB trial there), or
#: ``cap LAYER_DIR MIB CONTAINER_DIR``. The filesystem is mounted straight over the directory
#: while the shell's working directory still is the one below, whose files it then copies up.
#: Its sparse file stays there, hidden, until the engine deletes the directory. Few processes:
#: under load each costs milliseconds, and every create waits for this.
HOST_SCRIPT = r"""
set -eu
capfs() {  # DIR MIB: a fresh filesystem of MIB mounted over DIR, holding DIR's files
    dir=$1
    cd "$dir" || { echo "no $dir where process $VIA sees the engine's files" >&2; exit 3; }
    mkfs.ext4 -q -F -m 0 -O ^has_journal -E lazy_itable_init=1,nodiscard .sandboxkit-disk "$2M" >/dev/null
    mount -o loop,noinit_itable .sandboxkit-disk "$dir"
    set -- *
    if [ -e "$1" ]; then cp -a "$@" "$dir/"; fi
}
VIA=$1
shift
if [ "$1" = probe ]; then
    mkdir "$2/.sandboxkit-probe.$$"
    capfs "$2/.sandboxkit-probe.$$" 4
    cd /
    umount "$2/.sandboxkit-probe.$$"
    rm -r "$2/.sandboxkit-probe.$$"
else
    [ -d "$2/diff" ] && [ -d "$2/work" ] || { echo "$2 is not an overlay2 layer" >&2; exit 3; }
    (capfs "$2" "$3") & layer=$!
    (capfs "$4" @CONTAINER_DIR_MIB@) & container=$!
    rc=0
    wait $layer || rc=$?
    wait $container || rc=$?
    [ $rc = 0 ] || exit $rc
fi
echo "@OK@"
""".replace("@OK@", OK).replace("@CONTAINER_DIR_MIB@", str(CONTAINER_DIR_MIB))

#: Runs in the warden: finds a process in the engine's mount namespace (the runtime's shim that
#: started this exec) and runs HOST_SCRIPT there with the host's tools. Shell builtins only.
WARDEN_SCRIPT = r"""
set -eu
outside() {  # the first ancestor in another mount namespace
    pid=$$
    while [ /proc/$pid/ns/mnt -ef /proc/self/ns/mnt ]; do
        read -r stat < /proc/$pid/stat
        set -- ${stat##*) }
        pid=$2
    done
}
# not `runc exec`, which exits as soon as this runs, but the shim this is then re-parented to
tries=0
while [ $((tries += 1)) -le 300 ]; do
    outside
    [ "$pid" -gt 1 ] || { echo "the warden does not see the engine's host processes" >&2; exit 4; }
    comm=
    read -r comm 2>/dev/null < /proc/$pid/comm || true
    case $comm in ""|runc*) sleep 0.01;; *) break;; esac
done
exec nsenter -t "$pid" -m -- sh -c "$HOST_SCRIPT" sandboxkit-disk "$pid ($comm)" "$@"
"""


def _run(api: Any, *args: str) -> tuple[bool, str]:
    """Run the disk script in the warden with ``args``: (it succeeded, its output)."""
    env = {"HOST_SCRIPT": HOST_SCRIPT}
    exec_id = api.exec_create(_warden.NAME, ["sh", "-c", WARDEN_SCRIPT, "sh", *args], environment=env, user="root")
    out = api.exec_start(exec_id["Id"]).decode(errors="replace").strip()
    return out.endswith(OK), out


def available(api: Any, info: dict[str, Any]) -> bool:
    """True when the warden can give this engine's sandboxes a capped layer (a 4 MiB trial)."""
    if info.get("Driver") != "overlay2" or not _warden.enabled():
        return False
    if not _warden.can_mount(_warden.inspect(api)):
        return False
    try:
        ok, _ = _run(api, "probe", str(info["DockerRootDir"]))
    except Exception:
        return False
    return ok


def apply(api: Any, container_id: str, disk_mib: int, root_dir: str) -> None:
    """Mount a ``disk_mib`` filesystem under the created (not yet started) container's writable layer,
    and one of CONTAINER_DIR_MIB under its directory in the engine's ``root_dir``."""
    info = api.inspect_container(container_id)
    upper = ((info.get("GraphDriver") or {}).get("Data") or {}).get("UpperDir")
    if not upper or not upper.endswith("/diff"):
        raise SandboxError(
            ErrorCode.SANDBOX_CREATION_FAILED,
            "the engine did not report the sandbox's overlay2 layer, so its disk cap cannot be set",
            provider=PROVIDER,
        )
    ok, out = _run(api, "cap", upper.removesuffix("/diff"), str(disk_mib), f"{root_dir}/containers/{info['Id']}")
    if not ok:
        raise SandboxError(
            ErrorCode.SANDBOX_CREATION_FAILED,
            f"could not cap the sandbox's disk at {disk_mib} MiB ({out[-300:]}); `sandboxkit warden status` shows "
            f"the warden that mounts it, or set {_warden.ENV_SWITCH}=off for no disk cap on this engine",
            provider=PROVIDER,
        )
