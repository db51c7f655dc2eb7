"""Unit-test code that uses sandboxkit without Docker or an account: the ``memory`` provider.

.. warning::
   **The memory provider is NOT a sandbox.** Its commands are ordinary processes on this host,
   run as your user, with your files, your network and your environment; its file calls read and
   write this host's filesystem at the paths given. It exists so that tests of *your* code run in
   milliseconds without an engine. Never give it code you do not trust.

What it offers: each sandbox gets a private temporary directory (its default working directory
and ``$HOME``, removed on close); commands run under ``sh -c`` and really run, with timeouts that
kill the whole process tree (Linux); ``stdin=``, streaming, ``name=``/``app=``, tags, ``list``
and ``from_id`` within this process. It declares no GPU, network blocking, resource limits,
users, volumes or secrets: asking for them raises CAPABILITY_NOT_SUPPORTED, as on any provider
without them.

Canned results, like httpx's ``MockTransport`` or moto: :data:`responses` answers commands that
start with a given text without running them, and records every command run::

    import sandboxkit
    from sandboxkit.testing import responses

    def test_my_agent_runs_the_tests():
        responses.clear()
        responses.add("pytest", stdout="3 passed\\n")
        my_agent(provider="memory")            # your code: Sandbox.create(provider=...) inside
        assert "pytest -q" in responses.calls  # what it ran, in order

Select it with ``provider="memory"`` or ``SANDBOXKIT_PROVIDER=memory``. It is registered through
the core distribution's ``sandboxkit`` entry point, the way every plugin registers.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator

from sandboxkit._hookspecs import ProviderRecord, hookimpl
from sandboxkit._memory import RESPONDER, MemoryProvider, Responder

__all__ = ["MemoryProvider", "Responder", "registered", "responses", "sandboxkit_providers"]

#: Canned command results and the record of commands run, shared by every memory sandbox.
responses: Responder = RESPONDER


@contextlib.contextmanager
def registered(provider_class: type, prefix: str | None = None) -> Iterator[str]:
    """Register ``provider_class`` under a new unique name for the ``with`` block; yields the name.

    The name's first use makes a fresh instance, so a test can change the environment the
    provider reads when it starts (a GPU mode, a host probe) without touching the shared one::

        with registered(MyProvider) as name:
            assert Capability.GPU not in Sandbox(name).capabilities
    """
    from sandboxkit import register_provider, unregister_provider

    name = f"{prefix or provider_class.__name__.lower()}-{uuid.uuid4().hex[:6]}"
    register_provider(provider_class, name=name)
    try:
        yield name
    finally:
        unregister_provider(name)


@hookimpl
def sandboxkit_providers() -> Iterable[ProviderRecord]:
    """The ``memory`` provider (entry point ``memory = sandboxkit.testing``)."""
    return [
        ProviderRecord(
            name="memory",
            factory="sandboxkit._memory:MemoryProvider",
            summary="in-process sandboxes for unit tests; commands run on this host, NOT isolated",
        )
    ]
