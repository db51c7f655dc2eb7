"""The bwrap provider: daemon-less local sandboxes held by a supervisor outside their namespaces."""

from __future__ import annotations

import builtins
import datetime as dt
import fcntl
import functools
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field

from sandboxkit.secrets import resolve_secrets
from sandboxkit.spi import (
    Capability,
    ErrorCode,
    ExecExit,
    ExecRequest,
    InSandboxProcesses,
    OutputCallback,
    Provider,
    SandboxError,
    SandboxHandle,
    SandboxInfo,
    SandboxSpec,
    SandboxState,
    StaleSandbox,
    StreamName,
    SupervisedProcesses,
    VolumeInfo,
    file_error,
)
from sandboxkit_bwrap import _agent, _exec, _gpu, _native, _registry, _rootfs, _seccomp, _supervisor
from sandboxkit_bwrap._cgroups import Kind, SandboxCgroups, sandbox_cgroups
from sandboxkit_bwrap._host import PROVIDER, Host, require
from sandboxkit_bwrap._registry import Record

_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: A registry entry without ``ready.json`` this old was left by a create that died.
START_GRACE = 60.0
#: slirp4netns's fixed addresses: the sandbox is 10.0.2.100, its DNS forwarder 10.0.2.3.
SLIRP_DNS = "10.0.2.3"
#: The size of the sandbox's /dev/shm (Docker's default ``shm_size``).
SHM_BYTES = 64 << 20

#: read_file/write_file exit codes of the agent (see agent.c)
_FILE_KINDS = {3: "is_directory", 4: "file_not_found", 6: "invalid_path", 7: "permission_denied"}


class BwrapOptions(BaseModel):
    """bwrap-only knobs, passed as ``provider_options={...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: "user": outbound access through slirp4netns in the sandbox's own network namespace;
    #: "host": share the host's network namespace (no isolation of the network at all)
    network: Literal["user", "host"] = "user"
    #: most processes the sandbox may run at once (contains fork bombs)
    pids_limit: int = Field(4096, gt=16)
    #: the sandbox's hostname (default: "sandbox")
    hostname: str = Field("sandbox", pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")
    #: how ``gpu=`` is served: the host's GPUs, a simulation, or refused; None reads $SANDBOXKIT_BWRAP_GPU
    gpu_mode: Literal["auto", "simulate", "off"] | None = None


class BwrapProvider(Provider):
    """Each sandbox: bwrap namespaces over an overlay root, a supervisor, cgroups (see README)."""

    name: ClassVar[str] = PROVIDER
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.STDIN,
            Capability.STREAMING,
            Capability.VOLUMES,
            Capability.SECRETS,
            Capability.NETWORK_BLOCK,
            Capability.NAMED,
            Capability.LIST,
            Capability.TAGS,
            Capability.IDLE_TIMEOUT,
            Capability.RESOURCE_LIMITS,
            Capability.USER,
            Capability.RECONNECT,
            Capability.GPU,  # current only with /dev/nvidia<N> on the host or SANDBOXKIT_BWRAP_GPU=simulate
            Capability.PROCESSES,  # the in-sandbox supervisor of sandboxkit._procd (needs python3 in the root)
            Capability.PTY,
        }
    )
    options_type: ClassVar[type[BaseModel]] = BwrapOptions

    def version(self) -> str:
        try:
            return metadata.version("sandboxkit-bwrap")
        except metadata.PackageNotFoundError:
            return "unknown"

    async def current_capabilities(self) -> frozenset[Capability]:
        """The declared set, without GPU unless the host has NVIDIA device nodes or simulate is set."""
        declared = type(self).capabilities
        return declared if _gpu.offered() else declared - {Capability.GPU}

    def capability_hint(self, capability: Capability) -> str:
        return _gpu.HINT if capability is Capability.GPU else ""

    async def create(self, spec: SandboxSpec, options: BaseModel) -> BwrapSandbox:
        assert isinstance(options, BwrapOptions)
        host = require()
        gpu = _gpu.for_spec(spec, options.gpu_mode)  # or refused, before anything is created
        agent, launch = _native.binary("agent"), _native.binary("launch")  # compiled once per machine
        _seccomp.filter_path()  # compiled once per machine too
        if options.network == "user" and not spec.block_network and host.slirp4netns is None:
            raise SandboxError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                "the default network needs slirp4netns (`apt-get install slirp4netns`); or pass "
                "block_network=True, or provider_options={'network': 'host'} to share the host's network",
                provider=PROVIDER,
            )
        rootfs = await anyio.to_thread.run_sync(_rootfs.resolve, spec.image)
        volumes = {mount: _volume_dir(name) for mount, name in spec.volumes.items()}
        for mount, path in volumes.items():
            if not path.is_dir():
                raise SandboxError(
                    ErrorCode.VOLUME_ERROR,
                    f"volume {path.name!r} (for {mount}) does not exist; create it with "
                    f"`sandboxkit volume create {path.name} --provider bwrap`",
                    provider=PROVIDER,
                )
        try:
            resolve_secrets(spec.secrets)
        except SandboxError as exc:
            raise SandboxError(ErrorCode.SANDBOX_CREATION_FAILED, exc.message, provider=PROVIDER) from None
        record = Record(
            id=uuid.uuid4().hex[:16],
            name=spec.name,
            app=spec.app,
            tags=dict(spec.tags),
            labels=dict(spec.labels),
            created_at=time.time(),
            timeout=spec.timeout,
            env={
                **rootfs.env,
                "HOSTNAME": options.hostname,
                **_limit_env(spec, options),
                **(gpu.env() if gpu else {}),
                **spec.env,
            },
            workdir=spec.workdir or rootfs.workdir,
            secrets=list(spec.secrets),
            volumes=sorted(spec.volumes.values()),
        )
        cgroups = sandbox_cgroups(record.id)  # made by _start, with the registry entry
        layers = [_etc_layer(options.hostname, _resolv_conf(spec, options)), rootfs.path]
        config = self._config(host, agent, launch, record, spec, options, cgroups, volumes)
        try:
            start = functools.partial(self._start, host, launch, layers, record, spec, options, config, gpu)
            ready = await anyio.to_thread.run_sync(start)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_cleanup, record)
            if isinstance(exc, (OSError, RuntimeError)):
                raise SandboxError(
                    ErrorCode.SANDBOX_CREATION_FAILED, f"the bwrap sandbox did not start: {exc}", provider=PROVIDER
                ) from None
            raise
        sandbox = BwrapSandbox(self, record, ready, host)
        if spec.workdir is not None:
            await sandbox.run_quiet(["mkdir", "-p", "--", spec.workdir], cwd="/")
        if gpu is not None and gpu.lib_dirs:  # the driver's libraries into the sandbox's ld.so cache
            await sandbox.run_quiet(["sh", "-c", "PATH=$PATH:/sbin:/usr/sbin; ! command -v ldconfig || ldconfig"])
        return sandbox

    def _start(
        self,
        host: Host,
        launch: str,
        layers: Sequence[Path],
        record: Record,
        spec: SandboxSpec,
        options: BwrapOptions,
        config: str,
        gpu: _gpu.GpuPlan | None,
    ) -> dict[str, Any]:
        """Register the sandbox, make its cgroups and writable layer, start its supervisor (in a thread)."""
        if spec.name is None:
            _registry.ensure_dirs()
            _register(record)
        else:
            with _registry.locked():  # one live sandbox per app and name
                if self._by_name(spec.app, spec.name, starting=True) is not None:
                    raise SandboxError(
                        ErrorCode.ALREADY_EXISTS,
                        f"a sandbox named {spec.name!r} already runs in app {spec.app!r}; pick another name, or "
                        "reach it with Sandbox.from_name",
                        provider=PROVIDER,
                    )
                _register(record)
        sandbox_cgroups(record.id).create(memory_mib=spec.memory_mib, cpu=spec.cpu, pids_limit=options.pids_limit)
        upper = record.dir / "upper"  # the sandbox's root directory: root inside owns it, every user enters it
        os.mkdir(upper)
        os.chmod(upper, 0o755)
        os.chown(upper, _rootfs.SHIFT, _rootfs.SHIFT)
        os.mkdir(record.dir / "work", 0o700)
        if gpu is not None:  # appended to BWRAP=(...): device nodes, driver files, the stand-in nvidia-smi
            gpu.prepare_root(upper, _rootfs.SHIFT)
            config += f"BWRAP+=({' '.join(map(shlex.quote, gpu.bwrap_args(record.dir)))})\n"
        return _launch(host, launch, layers, record, config)

    def _config(
        self,
        host: Host,
        agent: str,
        launch: str,
        record: Record,
        spec: SandboxSpec,
        options: BwrapOptions,
        cgroups: SandboxCgroups,
        volumes: Mapping[str, Path],
    ) -> str:
        """The supervisor's ``config.sh``: shell-quoted variables and arrays."""
        # bwrap makes the sandbox's user namespace; the supervisor maps its ids (--userns-block-fd)
        bwrap = [host.tools["bwrap"], "--cap-drop", "ALL"]
        # no --unshare-cgroup: each command gets a cgroup namespace from the agent (host root), so it
        # belongs to the host's user namespace and root inside cannot setns() into another one
        bwrap += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent"]
        if spec.block_network or options.network == "user":
            bwrap += ["--unshare-net"]
        bwrap += ["--bind", str(_registry.mountpoint()), "/", "--proc", "/proc", "--dev", "/dev"]
        bwrap += ["--hostname", options.hostname]
        # /dev/shm as on Docker (a 64 MiB tmpfs anyone may write, sticky): POSIX shared memory, and
        # where every user finds the spawned processes' supervisor (sandboxkit._procd)
        bwrap += ["--perms", "1777", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm"]
        for mount, path in sorted(volumes.items()):
            bwrap += ["--bind", str(path), mount]
        network_cmd = None
        if not spec.block_network and options.network == "user":
            assert host.slirp4netns is not None
            network_cmd = [host.slirp4netns, "--configure", "--mtu=65520", "--disable-host-loopback", "{pid}", "tap0"]
        arrays = {
            "BWRAP": bwrap,
            # bwrap runs as the sandbox's root's host uid, unprivileged, and makes the user namespace
            # whose ids the supervisor maps
            "AS_SHIFTED_ROOT": [launch, "--as", str(_rootfs.SHIFT)],
            "CGROUP_PROCS": [str(p) for p in cgroups.init_procs()],
            "CGROUP_DIRS": [str(d) for d in cgroups.all_dirs],
            "NET": network_cmd or [],
        }
        scalars = {
            "AGENT": agent,
            "SECCOMP": _seccomp.filter_path(),  # bwrap loads it into PID 1, the agent into every command
            "CMD_CGROUPS": str(cgroups.commands_dir),
            "ID_MAP": f"0 {_rootfs.SHIFT} {_rootfs.ID_RANGE}",
            "TIMEOUT_US": str(math.ceil(spec.timeout * 1e6)),
            "IDLE_US": str(math.ceil((spec.idle_timeout or 0) * 1e6)),
        }
        lines = [f"{k}={shlex.quote(v)}" for k, v in scalars.items()]
        lines += [f"{k}=({' '.join(map(shlex.quote, v))})" for k, v in arrays.items()]
        return "\n".join(lines) + "\n"

    def _by_name(self, app: str, name: str, *, starting: bool = False) -> Record | None:
        for record in _registry.all_records():
            if record.app != app or record.name != name:
                continue
            ready = _registry.ready_state(record)
            if _registry.alive(record, ready):
                return record
            if starting and ready is None and time.time() - record.created_at < START_GRACE:
                return record
        return None

    async def from_id(self, sandbox_id: str) -> BwrapSandbox:
        record = _registry.load(sandbox_id)
        ready = _registry.ready_state(record) if record else None
        if record is None or ready is None or not _registry.alive(record, ready):
            raise _not_found(sandbox_id)
        return BwrapSandbox(self, record, ready, require())

    async def from_name(self, app: str, name: str) -> BwrapSandbox:
        record = self._by_name(app, name)
        if record is None:
            raise SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND,
                f"no live sandbox named {name!r} in app {app!r}; it ended or never existed",
                provider=PROVIDER,
            )
        return await self.from_id(record.id)

    async def list(
        self,
        *,
        app: str | None = None,
        tags: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> builtins.list[SandboxInfo]:
        out = []
        for record in _registry.all_records():
            if app is not None and record.app != app:
                continue
            if any(record.tags.get(k) != v for k, v in (tags or {}).items()):
                continue
            if any(record.labels.get(k) != v for k, v in (labels or {}).items()):
                continue
            if _registry.alive(record):
                out.append(_info(record))
        return out

    async def gc(
        self, *, dry_run: bool = False, labels: Mapping[str, str] | None = None
    ) -> builtins.list[StaleSandbox]:
        """Entries whose supervisor died (cleaned up) and sandboxes past their lifetime (ended).

        Without a label filter it also removes what a supervisor killed mid-cleanup left behind:
        cgroups with no registry entry, half-removed entries (``ID.gone``).
        """
        stale = []
        now = time.time()
        if not labels and not dry_run:
            await anyio.to_thread.run_sync(_remove_orphans)
        for record in _registry.all_records():
            if any(record.labels.get(k) != v for k, v in (labels or {}).items()):
                continue
            ready = _registry.ready_state(record)
            if ready is None:
                if now - record.created_at < START_GRACE:
                    continue
                reason, state = "never_started", SandboxState.FAILED
            elif not _registry.supervisor_alive(record):
                reason, state = "stopped", SandboxState.STOPPED
            elif now > record.created_at + record.timeout + 5:
                reason, state = "expired", SandboxState.RUNNING
            else:
                continue
            if not dry_run:
                await anyio.to_thread.run_sync(_terminate, record)
            stale.append(
                StaleSandbox(
                    id=record.id,
                    name=record.name,
                    app=record.app,
                    state=state,
                    reason=reason,
                    removed=not dry_run,
                    provider=PROVIDER,
                )
            )
        return stale

    async def create_volume(self, name: str, *, labels: Mapping[str, str] | None = None) -> VolumeInfo:
        path = _volume_dir(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
            os.chown(path, _rootfs.SHIFT, _rootfs.SHIFT)  # root inside owns it
        except FileExistsError:
            raise SandboxError(
                ErrorCode.ALREADY_EXISTS,
                f"volume {name!r} already exists; use it as is, or `sandboxkit volume rm {name}` first",
                provider=PROVIDER,
            ) from None
        return _volume_info(path)

    async def list_volumes(self, *, unmanaged: bool = False) -> builtins.list[VolumeInfo]:
        root = _registry.state_root() / "volumes"
        return [_volume_info(p) for p in sorted(root.iterdir()) if p.is_dir()] if root.is_dir() else []

    async def delete_volume(self, name: str) -> None:
        path = _volume_dir(name)
        if not path.is_dir():
            raise SandboxError(ErrorCode.VOLUME_ERROR, f"volume {name!r} does not exist", provider=PROVIDER)
        users = [r.id for r in _registry.all_records() if _registry.alive(r) and name in r.volumes]
        if users:
            raise SandboxError(
                ErrorCode.VOLUME_ERROR,
                f"volume {name!r} is mounted by sandbox(es) {', '.join(users)}; close them first",
                provider=PROVIDER,
            )
        await anyio.to_thread.run_sync(shutil.rmtree, path)


class BwrapSandbox(SupervisedProcesses, SandboxHandle):
    """A live bwrap sandbox; every call checks that its supervisor still holds it."""

    def __init__(self, provider: BwrapProvider, record: Record, ready: Mapping[str, Any], host: Host) -> None:
        self.provider = provider
        self.record = record
        self.id = record.id
        self.name = record.name
        self.app = record.app
        self.ready = dict(ready)
        self.started = False
        self.target = _exec.Target(sandbox_cgroups(record.id), record.dir / _agent.SOCKET)
        # spawned processes: a supervisor inside the sandbox; it starts in a cgroup of its own that
        # outlives the start (see ``_launch``), every other operation is an ordinary command
        self.supervisor = InSandboxProcesses(self.exec, launch=self._launch, provider=PROVIDER, sandbox_id=self.id)

    def __repr__(self) -> str:
        return f"BwrapSandbox(id={self.id!r}, name={self.name!r}, app={self.app!r})"

    def _alive(self) -> bool:
        return _registry.alive(self.record, self.ready)

    def _check(self) -> None:
        if not self._alive():
            raise _not_found(self.id)

    def _env(self, extra: Mapping[str, str]) -> dict[str, str]:
        """The image's and create-time env, then secrets (env= keys win), then this call's env."""
        try:
            secrets = resolve_secrets(self.record.secrets)
        except SandboxError as exc:
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT,
                f"this sandbox was created with secrets {', '.join(self.record.secrets)}: {exc.message}",
                provider=PROVIDER,
                sandbox_id=self.id,
            ) from None
        base = dict(self.record.env)
        return {**base, **{k: v for k, v in secrets.items() if k not in base}, **extra}

    async def _run(self, argv: Sequence[str], **kwargs: Any) -> _exec.Finished:
        if not self.started:  # the supervisor starts the agent and the network for the first command
            self._check()
            await anyio.to_thread.run_sync(_registry.start_commands, self.record, int(self.ready["supervisor_pid"]))
            self.started = True
        self._check()
        try:
            return await _exec.run(self.target, argv, **kwargs)
        except OSError as exc:
            self._check()  # its cgroups are gone with it
            raise SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND,
                f"the sandbox runs but its command agent does not answer ({exc}): it was started by another "
                "version of sandboxkit-bwrap, or its agent was killed from the host; close it and create a new one",
                provider=PROVIDER,
                sandbox_id=self.id,
            ) from None
        finally:
            self._check()

    async def exec(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        return await self._exec(request, on_output, "cmd")

    async def _launch(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        """How a spawned process's supervisor starts: as a command, but in a ``proc-N`` cgroup.

        The start's end leaves that cgroup alone (only its timeout or a cancelled call kills it),
        so the supervisor outlives the call and the client; it still holds the sandbox's limits,
        namespaces and root, and closing the sandbox kills it with everything else. Like a
        command's background children it is not activity for ``idle_timeout``, as on Docker.
        """
        return await self._exec(request, on_output, "proc")

    async def _exec(self, request: ExecRequest, on_output: OutputCallback, kind: Kind) -> ExecExit:
        env = self._env(request.env)
        ids = None
        if request.user is not None:
            ids, home = await self._user(request.user)
            if "HOME" not in request.env and home:
                env["HOME"] = home
        done = await self._run(
            request.argv,
            ids=ids,
            env=env,
            cwd=request.cwd or self.record.workdir,
            stdin=request.stdin,
            timeout=request.timeout,
            on_output=on_output,
            kind=kind,
        )
        return ExecExit(exit_code=done.exit_code, timed_out=done.timed_out, oom_killed=done.oom_killed)

    async def _user(self, user: str) -> tuple[tuple[int, int], str | None]:
        """``name``, ``uid``, ``name:group`` or ``uid:gid`` -> (uid, gid) and HOME, from the sandbox's files."""
        name, _, group = str(user).partition(":")
        _, passwd, _ = await self.run_quiet(["cat", "/etc/passwd"])
        entry = _lookup(passwd, name)
        if entry is None and not name.isdigit():
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT,
                f"user {name!r} is not in the sandbox's /etc/passwd; give a uid, or add the user first",
                provider=PROVIDER,
                sandbox_id=self.id,
            )
        uid = int(entry[2]) if entry else int(name)
        gid = int(entry[3]) if entry else 0
        if group:
            _, groups, _ = await self.run_quiet(["cat", "/etc/group"])
            found = _lookup(groups, group)
            if found is None and not group.isdigit():
                raise SandboxError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"group {group!r} is not in the sandbox's /etc/group; give a gid",
                    provider=PROVIDER,
                    sandbox_id=self.id,
                )
            gid = int(found[2]) if found else int(group)
        if not (0 <= uid < _rootfs.ID_RANGE and 0 <= gid < _rootfs.ID_RANGE):
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT,
                f"user {user!r}: ids must be below {_rootfs.ID_RANGE} (the ids the sandbox maps)",
                provider=PROVIDER,
                sandbox_id=self.id,
            )
        return (uid, gid), (entry[5] if entry and len(entry) > 5 else None)

    async def run_quiet(
        self, argv: Sequence[str], *, cwd: str | None = None, stdin: bytes | None = None, op: _agent.Op = "x"
    ) -> tuple[int, bytes, bytes]:
        """Run a helper command (no secrets), or the agent's file copy; return its exit code, stdout and stderr."""
        out: dict[StreamName, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

        async def collect(stream: StreamName, data: bytes) -> None:
            out[stream] += data

        done = await self._run(
            argv, op=op, env=dict(self.record.env), cwd=cwd or "/", stdin=stdin, timeout=None, on_output=collect
        )
        return done.exit_code, bytes(out["stdout"]), bytes(out["stderr"])

    async def read_file(self, path: str) -> bytes:
        code, data, err = await self.run_quiet([path], op="r")
        if code != 0:
            raise self._file_error(code, path, err)
        return data

    async def write_file(self, path: str, data: bytes) -> None:
        code, _, err = await self.run_quiet([path], stdin=data, op="w")
        if code != 0:
            raise self._file_error(code, path, err)

    def _file_error(self, code: int, path: str, err: bytes) -> SandboxError:
        detail = err.decode(errors="replace").strip()[-200:]
        return file_error(_FILE_KINDS.get(code), path, detail, provider=PROVIDER, sandbox_id=self.id)

    async def status(self) -> SandboxState:
        if self._alive():
            return SandboxState.RUNNING
        return SandboxState.STOPPED if self.record.dir.exists() else SandboxState.TERMINATED

    async def terminate(self) -> None:
        await anyio.to_thread.run_sync(_terminate, self.record)


def _register(record: Record) -> None:
    record.dir.mkdir(mode=0o711)
    record.dir.chmod(0o711)  # whatever the umask: bwrap (uid 100000) passes through to the mount point
    record.save()


def _launch(host: Host, launch: str, layers: Sequence[Path], record: Record, config: str) -> dict[str, Any]:
    """Start the supervisor over the mounted root (it forks itself away from us); wait for its first line.

    Its config and its pipes (see ``_supervisor``) are inherited fds: no file in the state directory.
    """
    fds: list[int] = []
    try:
        cfg, cfg_w = os.pipe2(os.O_CLOEXEC)
        fds += (cfg, cfg_w)
        data = config.encode()
        if len(data) > 60_000:  # more than a pipe holds before anyone reads (many volumes)
            fcntl.fcntl(cfg_w, fcntl.F_SETPIPE_SZ, len(data) + 4096)
        os.write(cfg_w, data)
        os.close(fds.pop())
        pipes = [fd for _ in _supervisor.PIPES for fd in os.pipe2(os.O_CLOEXEC)]
        fds += pipes
        log = os.open(record.dir / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fds.append(log)
        with _registry.start_lock(record) as lock:
            lower = ":".join(map(str, layers))
            mounts = [lower, str(record.dir / "upper"), str(record.dir / "work"), str(_registry.mountpoint())]
            inherited = [cfg, lock, *pipes]
            argv = [launch, *mounts, host.tools["bash"], str(_supervisor.SCRIPT), str(record.dir), *map(str, inherited)]
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd="/",
                start_new_session=True,
                pass_fds=inherited,
            )
    finally:
        for fd in fds:
            os.close(fd)
    assert proc.stdout is not None
    with proc.stdout:
        line = proc.stdout.readline()
    proc.wait()
    try:
        message: dict[str, Any] = json.loads(line)
    except ValueError:
        log_text = (record.dir / "supervisor.log").read_text(errors="replace").strip()[-500:]
        raise RuntimeError(f"the supervisor died while starting ({log_text or 'no output'})") from None
    if "error" in message:
        raise RuntimeError(str(message["error"]))
    ready: dict[str, Any] = message["ok"]
    return ready


def _terminate(record: Record) -> None:
    """Ask the supervisor to end the sandbox and wait until its processes are dead.

    The supervisor removes the cgroups and the writable layer afterwards, by itself; a dead
    supervisor's leftovers are cleaned up here.
    """
    ready = _registry.ready_state(record)
    if ready is not None and _registry.supervisor_alive(record):
        try:
            os.kill(int(ready["supervisor_pid"]), signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 30
        while _registry.supervisor_alive(record) and time.monotonic() < deadline:
            if _supervisor.starttime(int(ready["init_pid"])) != ready["init_start"]:
                return  # the sandbox is dead; the supervisor is cleaning up
            time.sleep(0.002)
    if record.dir.exists() and not _registry.supervisor_alive(record):
        _cleanup(record)


def _cleanup(record: Record) -> None:
    """What a dead supervisor left: processes, cgroups, the registry entry and writable layer."""
    cgroups = sandbox_cgroups(record.id)
    dirs = [str(d) for d in cgroups.all_dirs]
    _supervisor.kill_cgroups(dirs)
    _supervisor.remove_cgroups(dirs)
    shutil.rmtree(record.dir, ignore_errors=True)


def _resolv_conf(spec: SandboxSpec, options: BwrapOptions) -> str | None:
    return f"nameserver {SLIRP_DNS}\n" if not spec.block_network and options.network == "user" else None


def _etc_layer(hostname: str, resolv_conf: str | None) -> Path:
    """A read-only layer over the image with ``/etc/hosts``, ``hostname`` (and ``resolv.conf``).

    One per hostname and network kind, made once and shared: a sandbox that edits them gets its
    own copy in its writable layer (copy-up), and creates write no files for them.
    """
    files = {
        "hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t{hostname}\n",
        "hostname": hostname + "\n",
    }
    if resolv_conf is not None:
        files["resolv.conf"] = resolv_conf
    key = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
    layer = _registry.state_root() / "etc" / f"{hostname}-{key}"
    if layer.is_dir():
        return layer
    layer.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=layer.parent))
    try:
        etc = tmp / "etc"
        etc.mkdir()
        for name, text in files.items():
            (etc / name).write_text(text)
        for path in (tmp, etc, *etc.iterdir()):  # root inside owns them
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
            os.chown(path, _rootfs.SHIFT, _rootfs.SHIFT)
        os.rename(tmp, layer)
    except OSError:
        if not layer.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return layer


def _lookup(table: bytes, key: str) -> builtins.list[str] | None:
    """The /etc/passwd or /etc/group line whose name (or, for digits, id) is ``key``."""
    for line in table.decode(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) > 2 and (fields[0] == key or (key.isdigit() and fields[2] == key)):
            return fields
    return None


def _limit_env(spec: SandboxSpec, options: BwrapOptions) -> dict[str, str]:
    """The limits as ``SANDBOXKIT_*`` variables, as on Docker (``nproc`` and ``free`` show the host's)."""
    env = {"SANDBOXKIT_TIMEOUT": f"{spec.timeout:g}", "SANDBOXKIT_PIDS_LIMIT": str(options.pids_limit)}
    if spec.cpu is not None:
        env["SANDBOXKIT_CPU"] = f"{spec.cpu:g}"
    if spec.memory_mib is not None:
        env["SANDBOXKIT_MEMORY_MIB"] = str(spec.memory_mib)
    if spec.idle_timeout is not None:
        env["SANDBOXKIT_IDLE_TIMEOUT"] = f"{spec.idle_timeout:g}"
    return env


def _remove_orphans() -> None:
    known = {r.id for r in _registry.all_records()}
    root = _registry.sandboxes_dir()
    for path in root.glob("*.gone") if root.is_dir() else []:
        shutil.rmtree(path, ignore_errors=True)
    parent = sandbox_cgroups("x").commands_dir.parent
    for cgroup in parent.iterdir() if parent.is_dir() else []:
        if cgroup.is_dir() and _registry.ID.match(cgroup.name) and cgroup.name not in known:
            dirs = [str(d) for d in sandbox_cgroups(cgroup.name).all_dirs]
            _supervisor.kill_cgroups(dirs)
            _supervisor.remove_cgroups(dirs)


def _not_found(sandbox_id: str) -> SandboxError:
    return SandboxError(
        ErrorCode.SANDBOX_NOT_FOUND,
        f"sandbox {sandbox_id!r} is closed, past its lifetime or gone; create a new one",
        provider=PROVIDER,
        sandbox_id=sandbox_id,
    )


def _info(record: Record) -> SandboxInfo:
    return SandboxInfo(
        id=record.id,
        name=record.name,
        app=record.app,
        tags=dict(record.tags),
        state=SandboxState.RUNNING,
        created_at=dt.datetime.fromtimestamp(record.created_at, dt.UTC),
        provider=PROVIDER,
    )


def _volume_dir(name: str) -> Path:
    if not isinstance(name, str) or not _VOLUME_NAME.match(name):
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT,
            f"volume name {name!r} is invalid; use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            provider=PROVIDER,
        )
    return _registry.state_root() / "volumes" / name


def _volume_info(path: Path) -> VolumeInfo:
    created = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
    return VolumeInfo(name=path.name, provider=PROVIDER, created_at=created, managed=True)
