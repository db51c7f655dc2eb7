"""Entry point of the bwrap provider: registers it the way any third-party plugin would.

Importing this module must stay cheap: it does not import the provider.
"""

from __future__ import annotations

from collections.abc import Iterable

from sandboxkit.spi import ProviderRecord, hookimpl


@hookimpl
def sandboxkit_providers() -> Iterable[ProviderRecord]:
    """The bwrap provider, imported on first use."""
    return [
        ProviderRecord(
            name="bwrap",
            factory="sandboxkit_bwrap.provider:BwrapProvider",
            summary="local sandboxes on bubblewrap namespaces, no daemon (Linux, root)",
            install_hint="pip install sandboxkit-bwrap, and `apt-get install bubblewrap slirp4netns`",
        )
    ]
