"""What a provider can do. A provider declares a frozenset of these; the facade checks it before calling."""

from __future__ import annotations

from enum import StrEnum


class Capability(StrEnum):
    """One optional feature of a provider. Undeclared ones raise CAPABILITY_NOT_SUPPORTED."""

    #: attach GPUs (``gpu="T4"``, ``"H100:2"``)
    GPU = "gpu"
    #: feed bytes to a command's standard input (``stdin=``)
    STDIN = "stdin"
    #: deliver output while the command runs (``stream()``)
    STREAMING = "streaming"
    #: mount named volumes that outlive a sandbox (``volumes=``)
    VOLUMES = "volumes"
    #: inject named secrets as environment variables (``secrets=``)
    SECRETS = "secrets"
    #: cut the sandbox off from every network (``block_network=True``)
    NETWORK_BLOCK = "network_block"
    #: give sandboxes names unique per app, and find them by name (``name=``, ``from_name``)
    NAMED = "named"
    #: enumerate live sandboxes (``Sandbox.list``)
    LIST = "list"
    #: attach key/value tags and filter ``list`` by them (``tags=``)
    TAGS = "tags"
    #: end a sandbox that runs no command for a while (``idle_timeout=``)
    IDLE_TIMEOUT = "idle_timeout"
    #: enforce cpu and memory limits (``cpu=``, ``memory_mib=``)
    RESOURCE_LIMITS = "resource_limits"
    #: run a command as another user (``user=``)
    USER = "user"
    #: reconnect to a running sandbox by id from another client (``from_id``)
    RECONNECT = "reconnect"
    #: start processes that outlive the call, and reattach to them (``spawn``, ``process``)
    PROCESSES = "processes"
    #: run a spawned process on a pseudo-terminal (``spawn(..., pty=True)``, ``resize``)
    PTY = "pty"
    #: expose ports to the caller's machine (``ports=``, ``url``, ``tunnels``)
    PORTS = "ports"
    #: save a sandbox's filesystem and start new sandboxes from it (``snapshot``, ``snapshot=``)
    SNAPSHOTS = "snapshots"
    #: egress allowlists by domain and CIDR, changeable at runtime (``network=``, ``set_network``)
    NETWORK_POLICY = "network_policy"
    #: add secret-backed headers to allowed requests outside the sandbox (``HeaderInjection``)
    CREDENTIAL_INJECTION = "credential_injection"
