"""Modal image definitions (Dockerfile layers) mapped onto images that exist locally.

Nothing is built: a layer's ``FROM`` is mapped to a local image, ``ENV``/``WORKDIR``/``CMD`` are
honoured, and build steps are refused, except the fixed setup steps of Modal's default
``Image.debian_slim()`` (compilers and a pip upgrade), which the local Python base image stands in for.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from modal_proto import api_pb2

#: Image builder version the emulator announces; the layers below are the ones it produces.
BUILDER_VERSION = "2025.06"
#: Build steps of ``Image.debian_slim()`` that the local Python base image already covers.
_DEBIAN_SLIM_STEPS = (
    "RUN apt-get update",
    "RUN apt-get install -y gcc gfortran build-essential",
    "RUN pip install --upgrade ",
    "RUN echo 'debconf debconf/frontend select Noninteractive' | debconf-set-selections",
)

#: Image ids of filesystem snapshots: ``im-`` and the Docker snapshot id (``snap-...``).
SNAPSHOT_PREFIX = "im-"
_SNAPSHOT_IDS = "im-snap-"


class ImageError(Exception):
    """A layer the emulator cannot provide offline; the message says what to do instead."""


@dataclass(frozen=True, kw_only=True)
class ImageSpec:
    """What a Modal image id stands for locally."""

    local: str
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    cmd: tuple[str, ...] = ()
    #: a filesystem snapshot of the Docker provider to start from instead of ``local``
    snapshot: str | None = None


class ImageStore:
    """Image ids handed out by ImageGetOrCreate, and the local image each one maps to."""

    def __init__(self, image_map: Sequence[tuple[str, str]]) -> None:
        self.image_map = tuple(image_map)
        self._images: dict[str, ImageSpec] = {}

    def map_reference(self, reference: str) -> str:
        """The local image for a registry reference: the first matching pattern, else the reference."""
        for pattern, local in self.image_map:
            if fnmatch.fnmatchcase(reference, pattern):
                return local
        return reference

    def add(self, image: api_pb2.Image) -> str:
        """Register a layer; returns its image id. Raises ImageError for layers that need a build."""
        bases = {b.docker_tag: self.get(b.image_id) for b in image.base_images}
        spec: ImageSpec | None = None
        commands = [c.strip() for c in image.dockerfile_commands if c.strip()]
        debian_slim = bool(commands) and fnmatch.fnmatchcase(commands[0], "FROM python:*-slim-*")
        for command in commands:
            word, _, rest = command.partition(" ")
            word = word.upper()
            if word == "FROM":
                ref = rest.split()[0]
                spec = bases[ref] if ref in bases else ImageSpec(local=self.map_reference(ref))
            elif spec is None:
                raise ImageError(f"image layer does not start with FROM: {command!r}")
            elif word == "ENV":
                spec = replace(spec, env={**spec.env, **_env(rest)})
            elif word == "WORKDIR":
                spec = replace(spec, workdir=rest.strip())
            elif word == "CMD":
                spec = replace(spec, cmd=_cmd(rest))
            elif debian_slim and command.startswith(_DEBIAN_SLIM_STEPS):
                continue
            else:
                raise ImageError(
                    f"the Modal emulator builds no images offline, so it cannot run {command!r}; use "
                    "Image.from_registry(...) with an image mapped to a local one (see --image-map), or "
                    "bake the step into a local image"
                )
        if spec is None:
            raise ImageError("empty image definition")
        image_id = f"im-{uuid.uuid4().hex[:22]}"
        self._images[image_id] = spec
        return image_id

    def add_snapshot(self, snapshot_id: str, base: ImageSpec) -> str:
        """Register a Docker snapshot as an image; its id encodes the snapshot, so it outlives the emulator."""
        image_id = f"{SNAPSHOT_PREFIX}{snapshot_id}"
        self._images[image_id] = replace(base, snapshot=snapshot_id)
        return image_id

    def known(self, image_id: str) -> bool:
        """True for an id this store handed out (or a snapshot's)."""
        return image_id in self._images or image_id.startswith(_SNAPSHOT_IDS)

    def get(self, image_id: str) -> ImageSpec:
        """The spec of an image id; an id from an earlier emulator run maps to the default Python image."""
        spec = self._images.get(image_id)
        if spec is None and image_id.startswith(_SNAPSHOT_IDS):
            return ImageSpec(local="", snapshot=image_id[len(SNAPSHOT_PREFIX) :])
        if spec is None:
            # a client process caches the id of Modal's default image across emulator restarts
            return ImageSpec(local=self.map_reference("python:3-slim"))
        return spec


def _env(rest: str) -> dict[str, str]:
    parts = shlex.split(rest)
    if len(parts) == 2 and "=" not in parts[0]:
        return {parts[0]: parts[1]}
    return dict(p.split("=", 1) for p in parts if "=" in p)


def _cmd(rest: str) -> tuple[str, ...]:
    try:
        value = json.loads(rest)
    except ValueError:
        return ("sh", "-c", rest)
    return tuple(str(v) for v in value) if isinstance(value, list) else ("sh", "-c", rest)
