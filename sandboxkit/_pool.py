"""Warm pools: sandboxes created ahead of need, handed out at once, refilled in the background.

A sandbox handed out is the caller's: it is never taken back (the code run in it may have
changed it), so closing it is the caller's job, and the pool closes whatever is still open,
idle or handed out, when it closes itself. Handing one out costs a status check (about one
execute); a sandbox found dead, or idle for longer than ``max_idle``, is replaced.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, final

import anyio
import anyio.abc

from sandboxkit import _portal
from sandboxkit._async_sandbox import AsyncSandbox
from sandboxkit._errors import ErrorCode, SandboxError
from sandboxkit._spec import SandboxSpec, build_spec
from sandboxkit._sync_sandbox import Sandbox
from sandboxkit._types import SandboxState

#: Most sandboxes a pool creates at once (Docker tops out near 10 starts/s on 2 cores).
MAX_PARALLEL_CREATES = 4
#: Commands run in each new sandbox before it is handed out, so lazy set-up happens in the background.
WARM_UP_COMMANDS = 2
#: Longest pause between failed creations.
MAX_BACKOFF = 30.0


def _options(spec: SandboxSpec | Mapping[str, Any] | None, options: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(spec, SandboxSpec):
        base: dict[str, Any] = {name: getattr(spec, name) for name in spec.model_fields_set}
    elif spec is None or isinstance(spec, Mapping):
        base = dict(spec or {})
    else:
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT, f"spec must be a SandboxSpec or a dict of options, got {type(spec).__name__}"
        )
    merged = {**base, **options}
    if "name" in merged:
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT, "a pool cannot create named sandboxes (names are unique); leave name= out"
        )
    return merged


@final
class AsyncPool:
    """Keeps ``size`` sandboxes ready. Use as ``async with AsyncPool({...}, size=4) as pool:``.

    ``spec`` is a :class:`SandboxSpec` or a dict of :meth:`AsyncSandbox.create` options; keyword
    options are added to it. ``max_idle`` (seconds, default half the sandbox lifetime) replaces
    sandboxes that waited too long, so one handed out has most of its lifetime ahead of it.
    """

    def __init__(
        self,
        spec: SandboxSpec | Mapping[str, Any] | None = None,
        *,
        size: int = 4,
        provider: str | None = None,
        max_idle: float | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise SandboxError(ErrorCode.INVALID_ARGUMENT, f"size must be a positive int, got {size!r}")
        self.id = uuid.uuid4().hex[:12]
        merged = _options(spec, options)
        merged["labels"] = {**dict(merged.get("labels") or {}), "pool": self.id}
        validated = build_spec(merged)  # a typo fails here, not in the background
        self.size = size
        self.max_idle = validated.timeout / 2 if max_idle is None else float(max_idle)
        if self.max_idle <= 0:
            raise SandboxError(ErrorCode.INVALID_ARGUMENT, f"max_idle must be positive, got {max_idle!r}")
        self._provider = provider
        self._options = merged
        self._idle: collections.deque[tuple[float, AsyncSandbox]] = collections.deque()
        self._out: builtins.list[AsyncSandbox] = []
        self._creating = 0
        self._failures = 0
        self._error: SandboxError | None = None
        self._errors_seen = 0
        self._tg: anyio.abc.TaskGroup | None = None
        self._closed = False
        self._changed: anyio.Event | None = None
        self._refill: anyio.Event | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._loop: anyio.CancelScope | None = None

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> AsyncPool:
        if self._tg is not None or self._closed:
            raise SandboxError(ErrorCode.ALREADY_INITIALIZED, "this pool was already started; make a new Pool")
        self._changed, self._refill = anyio.Event(), anyio.Event()
        self._limiter = anyio.CapacityLimiter(min(self.size, MAX_PARALLEL_CREATES))
        self._loop = anyio.CancelScope()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._keep_full)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
        tg, self._tg = self._tg, None
        if tg is not None:  # creations in flight finish and close what they made
            await tg.__aexit__(None, None, None)

    async def aclose(self) -> None:
        """Stop refilling and close every sandbox of the pool, idle or handed out. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            self._loop.cancel()
        with anyio.CancelScope(shield=True):
            sandboxes = [sb for _, sb in self._idle] + self._out
            self._idle.clear()
            self._out.clear()
            async with anyio.create_task_group() as closer:
                for sb in sandboxes:
                    closer.start_soon(_close_quietly, sb)
        self._notify()

    # ------------------------------------------------------------ handing out
    @property
    def ready(self) -> int:
        """How many sandboxes wait to be handed out."""
        return len(self._idle)

    async def acquire(self) -> AsyncSandbox:
        """A ready sandbox, at once when one waits; else the next one created.

        Raises the creation error when creating sandboxes fails and none is ready.
        """
        if self._tg is None or self._closed:
            raise SandboxError(
                ErrorCode.NOT_INITIALIZED,
                "this pool is not running; use `async with AsyncPool(...) as pool:` (or `with Pool(...)`)",
            )
        errors_before = self._errors_seen
        while True:
            while self._idle:
                created, sandbox = self._idle.popleft()
                self._wake_refill()
                if time.monotonic() - created > self.max_idle or not await _running(sandbox):
                    self._discard(sandbox)
                    continue
                self._out = [sb for sb in self._out if not sb._closed]  # forget the ones closed by their users
                self._out.append(sandbox)
                return sandbox
            if self._closed:
                raise SandboxError(ErrorCode.SANDBOX_NOT_FOUND, "the pool was closed while waiting for a sandbox")
            if self._errors_seen > errors_before and self._error is not None:
                raise SandboxError(
                    self._error.code,
                    f"the pool could not create a sandbox: {self._error.message}",
                    provider=self._error.provider,
                )
            assert self._changed is not None
            await self._changed.wait()

    async def release(self, sandbox: AsyncSandbox) -> None:
        """Close a sandbox this pool handed out (sandboxes are never reused)."""
        if sandbox in self._out:
            self._out.remove(sandbox)
        await sandbox.close()

    @contextlib.asynccontextmanager
    async def sandbox(self) -> AsyncIterator[AsyncSandbox]:
        """``async with pool.sandbox() as sb:`` acquires one and closes it afterwards."""
        sb = await self.acquire()
        try:
            yield sb
        finally:
            await self.release(sb)

    # ------------------------------------------------------------ refilling
    async def _keep_full(self) -> None:
        assert self._tg is not None and self._loop is not None
        with self._loop:
            while True:
                self._drop_stale()
                if self._failures:  # creation keeps failing: back off before the next try
                    await anyio.sleep(min(MAX_BACKOFF, 0.25 * 2**self._failures))
                missing = self.size - len(self._idle) - self._creating
                for _ in range(max(missing, 0)):
                    self._creating += 1
                    self._tg.start_soon(self._create_one)
                with anyio.move_on_after(max(self.max_idle / 4, 0.5)):
                    assert self._refill is not None
                    await self._refill.wait()
                self._refill = anyio.Event()

    async def _create_one(self) -> None:
        assert self._limiter is not None
        try:
            async with self._limiter:
                sandbox = await AsyncSandbox.create(self._provider, **self._options)
            try:  # warm-up: a provider may prepare for commands lazily (Docker starts its exec agent)
                for _ in range(WARM_UP_COMMANDS):
                    await sandbox.execute(["true"])
            except SandboxError as exc:
                if exc.code == ErrorCode.SANDBOX_NOT_FOUND:
                    await _close_quietly(sandbox)
                    raise
            if self._closed:
                await _close_quietly(sandbox)
                return
            self._idle.append((time.monotonic(), sandbox))
            self._failures = 0
        except SandboxError as exc:
            self._error = exc
            self._errors_seen += 1
            self._failures += 1
        finally:
            self._creating -= 1
            self._notify()
            self._wake_refill()

    def _drop_stale(self) -> None:
        now = time.monotonic()
        while self._idle and now - self._idle[0][0] > self.max_idle:
            self._discard(self._idle.popleft()[1])

    def _discard(self, sandbox: AsyncSandbox) -> None:
        if self._tg is not None:
            self._tg.start_soon(_close_quietly, sandbox)
        else:
            self._out.append(sandbox)  # closed with the rest

    def _notify(self) -> None:
        if self._changed is not None:
            event, self._changed = self._changed, anyio.Event()
            event.set()

    def _wake_refill(self) -> None:
        if self._refill is not None:
            self._refill.set()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._tg is not None else "not started"
        return f"<AsyncPool size={self.size} ready={self.ready} {state}>"


@final
class Pool:
    """The blocking twin of :class:`AsyncPool`: ``with Pool({...}, size=4) as pool: sb = pool.acquire()``."""

    def __init__(
        self,
        spec: SandboxSpec | Mapping[str, Any] | None = None,
        *,
        size: int = 4,
        provider: str | None = None,
        max_idle: float | None = None,
        **options: Any,
    ) -> None:
        self._async = AsyncPool(spec, size=size, provider=provider, max_idle=max_idle, **options)
        self._context: contextlib.AbstractContextManager[AsyncPool] | None = None
        self._handed: builtins.list[Sandbox] = []

    def start(self) -> Pool:
        """Start filling the pool (``with`` and the first ``acquire`` do it for you)."""
        if self._context is None:
            context = _portal.portal().wrap_async_context_manager(self._async)
            context.__enter__()
            self._context = context
            _portal.track(self)
        return self

    def __enter__(self) -> Pool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop refilling and close every sandbox of the pool. Idempotent."""
        context, self._context = self._context, None
        if context is not None:
            context.__exit__(None, None, None)
        for sandbox in self._handed:
            _portal.untrack(sandbox)
        self._handed.clear()
        _portal.untrack(self)

    @property
    def size(self) -> int:
        """How many sandboxes the pool keeps ready."""
        return self._async.size

    @property
    def ready(self) -> int:
        """How many sandboxes wait to be handed out."""
        return self._async.ready

    @property
    def aio(self) -> AsyncPool:
        """The async pool underneath (it runs on sandboxkit's background loop)."""
        return self._async

    def acquire(self) -> Sandbox:
        """A ready sandbox; see :meth:`AsyncPool.acquire`."""
        self.start()
        sandbox = Sandbox._wrap(_portal.call(self._async.acquire))
        self._handed.append(sandbox)
        return sandbox

    def release(self, sandbox: Sandbox) -> None:
        """Close a sandbox this pool handed out."""
        _portal.call(self._async.release, sandbox.aio)
        _portal.untrack(sandbox)
        if sandbox in self._handed:
            self._handed.remove(sandbox)

    @contextlib.contextmanager
    def sandbox(self) -> Iterator[Sandbox]:
        """``with pool.sandbox() as sb:`` acquires one and closes it afterwards."""
        sb = self.acquire()
        try:
            yield sb
        finally:
            self.release(sb)

    def __repr__(self) -> str:
        return repr(self._async).replace("<AsyncPool", "<Pool", 1)


async def _running(sandbox: AsyncSandbox) -> bool:
    try:
        return await sandbox.handle.status() in (SandboxState.RUNNING, SandboxState.PENDING)
    except SandboxError:
        return False
    except Exception:
        return False


async def _close_quietly(sandbox: AsyncSandbox) -> None:
    try:
        await sandbox.close()
    except Exception:
        pass
