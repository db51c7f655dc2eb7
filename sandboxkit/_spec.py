"""SandboxSpec: every create option, validated before any provider is called."""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sandboxkit._errors import ErrorCode, SandboxError
from sandboxkit._network import NetworkPolicy

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_GPU = re.compile(r"^(?P<type>[A-Za-z0-9][A-Za-z0-9-]*[!+]?)(?::(?P<count>\d+))?$")
MAX_GPU_COUNT = 8
DEFAULT_APP = "sandboxkit"
DEFAULT_TIMEOUT = 300.0

Name = Annotated[str, Field(pattern=_NAME)]


def _absolute(path: str, what: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"{what} must be an absolute path starting with '/', got {path!r}")
    if "\x00" in path:
        raise ValueError(f"{what} must not contain NUL bytes")
    return posixpath.normpath(path)


def parse_gpu(gpu: str) -> tuple[str, int]:
    """``"h100:2"`` -> ``("H100", 2)``; raises ValueError with the accepted shape."""
    m = _GPU.match(gpu.strip())
    count = int(m["count"]) if m and m["count"] else 1
    if not m or not 1 <= count <= MAX_GPU_COUNT:
        raise ValueError(
            f"gpu must look like 'T4', 'A100-80GB' or 'H100:2' (type, then ':count' from 1 to "
            f"{MAX_GPU_COUNT}), got {gpu!r}"
        )
    return m["type"].upper(), count


class SandboxSpec(BaseModel):
    """The options of ``Sandbox.create``; see the README for each one's meaning."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    image: str | None = None
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0, allow_inf_nan=False)
    workdir: str | None = None
    gpu: str | None = None
    cpu: float | None = Field(None, gt=0, allow_inf_nan=False)
    memory_mib: int | None = Field(None, gt=0)
    volumes: dict[str, Name] = Field(default_factory=dict)
    secrets: list[Name] = Field(default_factory=list)
    initial_files: dict[str, str | bytes] = Field(default_factory=dict, repr=False)
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    block_network: bool = False
    name: Name | None = None
    app: Name = DEFAULT_APP
    tags: dict[str, str] = Field(default_factory=dict)
    idle_timeout: float | None = Field(None, gt=0, allow_inf_nan=False)
    auth: dict[str, SecretStr] | None = Field(None, repr=False)
    provider_options: Any = None
    #: bookkeeping labels (not user tags): the test suites' session label, the CLI's owner
    labels: dict[str, str] = Field(default_factory=dict)
    #: ports inside the sandbox to expose to the caller's machine (capability PORTS)
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(default_factory=list)
    #: start from this snapshot's filesystem instead of ``image`` (capability SNAPSHOTS)
    snapshot: str | None = None
    #: egress allowlist (capability NETWORK_POLICY); ``block_network=True`` is ``NetworkPolicy.deny_all()``
    network: NetworkPolicy | None = None

    @field_validator("timeout", "idle_timeout", "cpu", mode="before")
    @classmethod
    def _finite(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, bool):
            raise ValueError(f"{info.field_name} must be a number, not a bool")
        if isinstance(v, float) and not math.isfinite(v):
            hint = "; for a long-lived sandbox give a large number of seconds such as 86400" if v > 0 else ""
            raise ValueError(f"{info.field_name} must be a finite number, got {v}{hint}")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or any(c.isspace() for c in v)):
            raise ValueError(f"image must be a non-empty image reference without spaces, got {v!r}")
        return v

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, v: str | None) -> str | None:
        return None if v is None else _absolute(v, "workdir")

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, v: str | None) -> str | None:
        if v is None:
            return None
        kind, count = parse_gpu(v)
        return kind if count == 1 else f"{kind}:{count}"

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, v: dict[str, str]) -> dict[str, str]:
        out = {_absolute(p, "volume mount path"): name for p, name in v.items()}
        if "/" in out:
            raise ValueError("a volume cannot be mounted at '/'")
        return out

    @field_validator("initial_files")
    @classmethod
    def _files(cls, v: dict[str, str | bytes]) -> dict[str, str | bytes]:
        return {_absolute(p, "initial_files path"): data for p, data in v.items()}

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        check_env(v)
        return v

    @field_validator("snapshot", mode="before")
    @classmethod
    def _snapshot(cls, v: Any) -> Any:
        return getattr(v, "id", v)  # a Snapshot object or its id

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("ports must not repeat a port")
        return v

    @model_validator(mode="after")
    def _network_choice(self) -> SandboxSpec:
        if self.network is not None and self.block_network:
            raise ValueError(
                "give either block_network=True or network=, not both (block_network is NetworkPolicy.deny_all())"
            )
        if self.ports and self.block_network:
            raise ValueError("ports= needs a network; it cannot be combined with block_network=True")
        return self

    @property
    def gpu_type(self) -> str | None:
        """The GPU type, upper-cased, or None."""
        return None if self.gpu is None else parse_gpu(self.gpu)[0]

    @property
    def gpu_count(self) -> int:
        """How many GPUs (0 without ``gpu``)."""
        return 0 if self.gpu is None else parse_gpu(self.gpu)[1]

    def auth_value(self, key: str) -> str | None:
        """The plain value of one ``auth`` entry (only providers should call this)."""
        secret = (self.auth or {}).get(key)
        return None if secret is None else secret.get_secret_value()


def check_env(env: Mapping[str, str]) -> None:
    """Raise ValueError unless every key is a shell identifier and every value a string without NUL."""
    if not isinstance(env, Mapping):
        raise ValueError(f"env must be a mapping of names to strings, got {type(env).__name__}")
    for key, value in env.items():
        if not isinstance(key, str) or not _ENV_KEY.fullmatch(key):
            raise ValueError(f"env key {key!r} must match [A-Za-z_][A-Za-z0-9_]* (letters, digits, underscore)")
        if not isinstance(value, str):
            raise ValueError(f"env value of {key} must be a string, got {type(value).__name__}")
        if "\x00" in value:  # no process environment can hold one; the value itself is not shown
            raise ValueError(
                f"env value of {key} contains a NUL byte, which an environment variable cannot hold; "
                "remove it, or pass binary data as a file (write_file)"
            )


def validation_error(exc: ValidationError, what: str = "option") -> SandboxError:
    """Turn pydantic's error into INVALID_ARGUMENT naming each field, never echoing values."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(x) for x in err["loc"]) or what
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown {what}; check the spelling (see the README for the list)"
        parts.append(f"{field}: {msg}")
    return SandboxError(ErrorCode.INVALID_ARGUMENT, f"invalid {what}s: " + "; ".join(parts))


def build_spec(options: Mapping[str, Any]) -> SandboxSpec:
    """Validate user options into a SandboxSpec or raise INVALID_ARGUMENT."""
    try:
        return SandboxSpec.model_validate(dict(options))
    except ValidationError as exc:
        raise validation_error(exc) from None
