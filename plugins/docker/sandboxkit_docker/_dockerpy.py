"""Every use of docker-py's private attributes, in one place (pyproject bounds docker below 8).

docker-py has no public API for these: the raw socket under an attached exec, the bytes its HTTP
response read ahead of that socket, a container create without the inspect that follows it, and
an archive PUT that refuses to replace a directory with a file.
"""

from __future__ import annotations

import socket
from typing import Any

import docker
from docker.models.containers import _create_container_args


def raw_socket(sock: Any) -> socket.socket | Any:
    """The OS socket under ``exec_start(socket=True)``'s result (a SocketIO wraps it on Unix sockets)."""
    return getattr(sock, "_sock", sock)


def read_ahead(sock: Any) -> bytes:
    """Output that arrived with the upgrade response and sits in http.client's buffer, not the socket.

    A fast command's first frames (or the engine's "unable to find user" message) can reach the
    client in the same read as the response headers; reading only the raw socket would lose them.
    The socket must be non-blocking by now, so this never waits.
    """
    response = getattr(sock, "_response", None)
    reader = getattr(getattr(getattr(response, "raw", None), "_fp", None), "fp", None)
    if reader is None:
        return b""
    try:
        data = reader.peek()
        return bytes(reader.read(len(data))) if data else b""
    except (OSError, ValueError):
        return b""


def create_only(client: docker.DockerClient, kwargs: dict[str, Any]) -> Any:
    """``client.containers.create(**kwargs)`` without the inspect that follows it there: the id is
    all a new sandbox needs, and the inspect is a round trip and ~18 KiB held per sandbox."""
    args = _create_container_args({**kwargs, "version": client.api._version})
    return client.containers.prepare_model(client.api.create_container(**args))


def put_archive(api: Any, container_id: str, data: bytes) -> Any:
    """PUT a tar archive at ``/`` with ``noOverwriteDirNonDir`` (a file never replaces a directory)."""
    url = api._url("/containers/{0}/archive", container_id)
    res = api._put(url, params={"path": "/", "noOverwriteDirNonDir": "1"}, data=data)
    api._raise_for_status(res)
    return res
