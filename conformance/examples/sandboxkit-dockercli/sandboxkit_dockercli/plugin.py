"""The module the entry point names: cheap to import, it only says where the provider class lives."""

from __future__ import annotations

from collections.abc import Iterable

from sandboxkit.spi import ProviderRecord, hookimpl


@hookimpl
def sandboxkit_providers() -> Iterable[ProviderRecord]:
    return [
        ProviderRecord(
            name="dockercli",
            factory="sandboxkit_dockercli.provider:DockerCliProvider",
            summary="containers through the docker command line (example provider)",
            install_hint="pip install sandboxkit-dockercli, and put `docker` on PATH",
        )
    ]
