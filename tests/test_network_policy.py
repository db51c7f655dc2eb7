"""NetworkPolicy and HeaderInjection as values: what they accept, normalise and refuse (no Docker)."""

from __future__ import annotations

from typing import Any

import pytest

from sandboxkit import ErrorCode, HeaderInjection, NetworkPolicy, SandboxError
from sandboxkit._network import as_policy, domain_matches


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("allowed.test", "allowed.test", True),
        ("allowed.test", "ALLOWED.test.", True),
        ("allowed.test", "api.allowed.test", False),
        ("*.allowed.test", "api.allowed.test", True),
        ("*.allowed.test", "a.b.allowed.test", True),
        ("*.allowed.test", "allowed.test", False),
        ("*.allowed.test", "evilallowed.test", False),
        ("*.allowed.test", "allowed.test.evil", False),
    ],
)
def test_domain_rules_match_exact_names_and_names_below_a_wildcard(pattern: str, host: str, matches: bool) -> None:
    assert domain_matches(pattern, host) is matches


def test_values_are_normalised() -> None:
    policy = as_policy({"allow_domains": ["PyPI.org"], "allow_cidrs": ["10.1.2.3/24"], "ports": [443, 80, 443]})
    assert policy.allow_domains == ("pypi.org",)
    assert policy.allow_cidrs == ("10.1.2.0/24",)
    assert policy.ports == (80, 443)
    assert NetworkPolicy.deny_all().denies_all and not policy.denies_all


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"allow_domains": ["not a domain"]}, "DNS name"),
        ({"allow_domains": ["*"]}, "DNS name"),
        ({"allow_domains": ["a.*.test"]}, "DNS name"),
        ({"allow_cidrs": ["10.0.0.0/33"]}, "192.0.2.0/24"),
        ({"allow_cidrs": ["example.org"]}, "192.0.2.0/24"),
        ({"ports": []}, "1 to 65535"),
        ({"ports": [0]}, "1 to 65535"),
        ({"unknown": 1}, "Extra inputs"),
        (
            {"allow_domains": ["x.test"], "inject": [{"domain": "y.test", "secret": "s", "headers": {"X": "1"}}]},
            "allow_domains",
        ),
        (
            {
                "allow_domains": ["x.test"],
                "inject": [{"domain": "x.test", "secret": "s", "headers": {"X": "a\r\nY: b"}}],
            },
            "CR, LF",
        ),
        (
            {"allow_domains": ["x.test"], "inject": [{"domain": "x.test", "secret": "s", "headers": {"X Y": "1"}}]},
            "header name",
        ),
        ({"allow_domains": ["x.test"], "inject": [{"domain": "x.test", "secret": "s", "headers": {}}]}, "at least"),
    ],
)
def test_bad_policies_are_invalid_argument_saying_what_to_do(fields: dict[str, Any], said: str) -> None:
    with pytest.raises(SandboxError) as info:
        as_policy(fields)
    assert info.value.code == ErrorCode.INVALID_ARGUMENT
    assert said in info.value.message, info.value.message


def test_a_wildcard_injection_needs_a_wildcard_allow() -> None:
    rule = HeaderInjection(domain="*.api.test", secret="s", headers={"Authorization": "Bearer ${TOKEN}"})
    assert rule.template_keys() == {"TOKEN"}
    assert NetworkPolicy(allow_domains=["*.api.test"], inject=[rule]).inject == (rule,)
    with pytest.raises(SandboxError):
        as_policy({"allow_domains": ["api.test"], "inject": [rule.model_dump()]})


def test_the_upstream_ca_stays_out_of_repr() -> None:
    policy = NetworkPolicy(allow_domains=["x.test"], upstream_ca="-----BEGIN CERTIFICATE-----\nMIIB\n")
    assert "MIIB" not in repr(policy)
