"""A sandboxkit NetworkPolicy as Modal's outbound allowlists (``outbound_*_allowlist``).

Modal's allowlists name domains and CIDRs only: a policy must keep the default ports (80, 443),
and ``upstream_ca`` does not apply (Modal's egress trusts public CAs; the emulator's Docker egress
reads ``$SANDBOXKIT_DOCKER_EGRESS_CA``). Modal cannot combine header injection with a domain
allowlist, so CREDENTIAL_INJECTION is not declared.
"""

from __future__ import annotations

from sandboxkit.spi import ErrorCode, NetworkPolicy, SandboxError
from sandboxkit_modal._errors import PROVIDER

DEFAULT_PORTS = (80, 443)


def allowlists(policy: NetworkPolicy) -> tuple[list[str], list[str]]:
    """``(outbound_cidr_allowlist, outbound_domain_allowlist)`` for ``policy``."""
    if tuple(policy.ports) != DEFAULT_PORTS:
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT,
            "Modal's outbound allowlists cannot restrict ports; leave NetworkPolicy.ports at (80, 443)",
            provider=PROVIDER,
        )
    return list(policy.allow_cidrs), list(policy.allow_domains)
