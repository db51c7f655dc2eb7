"""Network policy: what a sandbox may reach, and headers injected outside it (NETWORK_POLICY)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sandboxkit._errors import ErrorCode, SandboxError

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^(?:\*\.)?(?:{_LABEL}\.)*{_LABEL}$")
_TEMPLATE_KEY = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class HeaderInjection(BaseModel):
    """Headers added to requests for ``domain`` by the egress; ``$KEY`` comes from the named secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    domain: str
    #: a secret of the local store (``sandboxkit secret create``); its values never enter the sandbox
    secret: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    headers: dict[str, str]

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        return check_domain(v)

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("headers must name at least one header")
        for name, value in v.items():
            if not _HEADER.match(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            if any(c in value for c in "\r\n\x00"):
                raise ValueError(f"header {name} must not contain CR, LF or NUL")
        return v

    def template_keys(self) -> set[str]:
        """The secret keys the header templates name (``$KEY`` or ``${KEY}``)."""
        return {m.group(1) for value in self.headers.values() for m in _TEMPLATE_KEY.finditer(value)}


class NetworkPolicy(BaseModel):
    """Egress allowlist: HTTP(S) to ``allow_domains`` on ``ports``, anything to ``allow_cidrs``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: exact names (``pypi.org``) and wildcards (``*.pythonhosted.org``: one label or more below)
    allow_domains: Sequence[str] = ()
    allow_cidrs: Sequence[str] = ()
    #: the TCP ports allowed to ``allow_domains``
    ports: Sequence[int] = (80, 443)
    inject: Sequence[HeaderInjection] = ()
    #: PEM text: extra CAs the egress trusts when it opens TLS upstream
    upstream_ca: str | None = Field(default=None, repr=False)

    @field_validator("allow_domains")
    @classmethod
    def _domains(cls, v: Sequence[str]) -> tuple[str, ...]:
        return tuple(check_domain(d) for d in v)

    @field_validator("allow_cidrs")
    @classmethod
    def _cidrs(cls, v: Sequence[str]) -> tuple[str, ...]:
        out = []
        for cidr in v:
            try:
                out.append(str(ipaddress.ip_network(cidr, strict=False)))
            except ValueError:
                raise ValueError(f"allow_cidrs entry {cidr!r} is not a CIDR such as 192.0.2.0/24") from None
        return tuple(out)

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: Sequence[int]) -> tuple[int, ...]:
        if not v or any(not 1 <= p <= 65535 for p in v):
            raise ValueError("ports must be one or more TCP ports from 1 to 65535")
        return tuple(sorted(set(v)))

    @field_validator("inject")
    @classmethod
    def _inject(cls, v: Sequence[HeaderInjection]) -> tuple[HeaderInjection, ...]:
        return tuple(v)

    @model_validator(mode="after")
    def _injected_allowed(self) -> NetworkPolicy:
        for rule in self.inject:
            probe = "x" + rule.domain[1:] if rule.domain.startswith("*.") else rule.domain
            if not self.allows_domain(probe):
                raise ValueError(f"inject domain {rule.domain!r} must also be in allow_domains")
        return self

    def allows_domain(self, host: str) -> bool:
        """True when ``host`` matches an entry of ``allow_domains``."""
        return any(domain_matches(pattern, host) for pattern in self.allow_domains)

    @classmethod
    def deny_all(cls) -> NetworkPolicy:
        """Nothing out at all; the same as ``block_network=True``."""
        return cls()

    @property
    def denies_all(self) -> bool:
        """True when nothing is allowed."""
        return not self.allow_domains and not self.allow_cidrs


def check_domain(domain: str) -> str:
    """Lower-case ``domain`` or raise ValueError: a DNS name, optionally ``*.`` in front."""
    if not isinstance(domain, str) or len(domain) > 253 or not _DOMAIN.match(domain):
        raise ValueError(f"domain {domain!r} must be a DNS name such as 'pypi.org' or '*.pythonhosted.org'")
    return domain.lower()


def domain_matches(pattern: str, host: str) -> bool:
    """``pattern`` (``a.b`` or ``*.a.b``: one label or more below ``a.b``) matches ``host``."""
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def as_policy(value: object) -> NetworkPolicy:
    """A NetworkPolicy from itself or a mapping of its fields; INVALID_ARGUMENT otherwise."""
    if isinstance(value, NetworkPolicy):
        return value
    try:
        return NetworkPolicy.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(str(e.get("msg", "")).removeprefix("Value error, ") for e in exc.errors())
        raise SandboxError(ErrorCode.INVALID_ARGUMENT, f"invalid network policy: {problems}") from None


def check_secrets(policy: NetworkPolicy) -> None:
    """INVALID_ARGUMENT unless every injection's secret exists and holds every ``$KEY`` it names."""
    from sandboxkit.secrets import get_secret  # the store imports the error types only

    for rule in policy.inject:
        keys = get_secret(rule.secret).keys()
        missing = sorted(rule.template_keys() - keys)
        if missing:
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT,
                f"the headers injected for {rule.domain} name {', '.join('$' + k for k in missing)}, "
                f"which secret {rule.secret!r} lacks; add the key(s) with `sandboxkit secret create "
                f"{rule.secret} KEY=VALUE... --force`",
            )
