"""Fixtures for the Modal provider's tests: a Modal emulator subprocess, env pointing the SDK at it,
and the conformance suite's provider fixtures (provider "modal", through the emulator).

The emulator is the project's own (``python -m sandboxkit_modal.emulator``); its sandboxes are
Docker containers made through the Docker provider, labelled with this session's label (it
inherits $SANDBOXKIT_LABELS), so the root conftest reaps whatever a failed test leaves.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from sandboxkit_conformance import MakeSecret
from sandboxkit_conformance.testhosts import NetworkHosts, network_hosts
from sandboxkit_modal.emulator import EmulatorProcess

from sandboxkit.secrets import create_secret, delete_secret

# modal reads its config file once, at import: keep a developer's ~/.modal.toml out of the tests
os.environ.setdefault("MODAL_CONFIG_PATH", os.path.join(tempfile.gettempdir(), "sandboxkit-no-modal-config.toml"))

MODAL_VARS = ("MODAL_SERVER_URL", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET")


@pytest.fixture(scope="session")
def network_test_hosts(docker_engine: Any, session_label: str) -> Iterator[NetworkHosts]:
    """allowed.test and denied.test, offline; the emulator's egresses reach them (started before it)."""
    key, _, value = session_label.partition("=")
    with network_hosts(docker_engine, {key: value}) as hosts:
        yield hosts


@pytest.fixture(scope="session")
def modal_emulator(
    docker_engine: object,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
    network_test_hosts: NetworkHosts,
) -> dict[str, str]:
    """A running emulator: its MODAL_SERVER_URL and token pair.

    It lives until pytest unconfigures, past session end, so that reapers running at session end
    (the conformance suite's, by label through the provider) can still reach it.
    """
    root = tmp_path_factory.mktemp("modal-emulator")
    log = root / "emulator.log"
    try:
        ca = root / "egress-upstream-ca.pem"
        ca.write_text(network_test_hosts.ca_pem)
        env = {
            "XDG_CONFIG_HOME": str(root / "config"),
            # policy sandboxes' egresses reach the test hosts, and trust their CA
            "SANDBOXKIT_DOCKER_EGRESS_NETWORK": network_test_hosts.network,
            "SANDBOXKIT_DOCKER_EGRESS_CA": str(ca),
        }
        emulator = EmulatorProcess(log=log, env=env)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)

    def stop() -> None:
        code = emulator.stop()
        if code != 0:
            print(f"the Modal emulator exited with {code}; its log:\n{log.read_text()}", file=sys.stderr)

    request.config.add_cleanup(stop)
    return {**emulator.env, "XDG_CONFIG_HOME": str(root / "config")}


@pytest.fixture
def emulator_secret(modal_emulator: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeSecret]:
    """``make({"K": "v"}) -> name``: a named secret in the local store the emulator reads, removed after."""
    monkeypatch.setenv("XDG_CONFIG_HOME", modal_emulator["XDG_CONFIG_HOME"])
    made: list[str] = []

    def make(values: Mapping[str, str]) -> str:
        name = f"sbk-secret-{uuid.uuid4().hex[:8]}"
        create_secret(name, values)
        made.append(name)
        return name

    yield make
    for name in made:
        delete_secret(name)


@pytest.fixture(scope="session")
def modal_env(modal_emulator: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    """Point the modal SDK (and so provider "modal") at the emulator until pytest unconfigures."""
    saved = {k: os.environ.get(k) for k in MODAL_VARS}
    os.environ.update({k: modal_emulator[k] for k in MODAL_VARS})

    def restore() -> None:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    request.config.add_cleanup(restore)
    return modal_emulator


# ---------------------------------------------------------------- the conformance suite, adopted as any provider would
@pytest.fixture(scope="session")
def sandboxkit_provider(modal_env: dict[str, str]) -> str:
    """Provider "modal": the real modal SDK, talking to the emulator (Docker containers underneath)."""
    return "modal"


@pytest.fixture(scope="session")
def sandboxkit_create_options() -> dict[str, Any]:
    """A registry image, as Modal users write it; the emulator maps python:* to the offline base image."""
    return {"image": "python:3.12-slim"}


@pytest.fixture(scope="session")
def sandboxkit_gpus() -> list[str]:
    """The emulator simulates GPUs (a stand-in nvidia-smi): check one and several."""
    return ["T4", "A100:2"]


@pytest.fixture
def sandboxkit_make_secret(emulator_secret: MakeSecret) -> MakeSecret:
    """Named secrets go where the emulator reads them: the local store under its $XDG_CONFIG_HOME."""
    return emulator_secret


@pytest.fixture(scope="session")
def sandboxkit_network_hosts(network_test_hosts: NetworkHosts) -> NetworkHosts:
    """The emulator's egresses already reach the test hosts (SANDBOXKIT_DOCKER_EGRESS_NETWORK)."""
    return network_test_hosts


@pytest.fixture(scope="session")
def sandboxkit_expected_failures() -> dict[str, str]:
    """What Modal cannot do: it has no API that lists a sandbox's denied connections."""
    return {"TestNetworkPolicy::test_denied_attempts_are_in_the_network_log": "Modal has no network log API"}
