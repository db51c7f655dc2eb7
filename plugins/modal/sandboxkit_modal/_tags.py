"""sandboxkit's bookkeeping on Modal rides in sandbox tags under a reserved ``sandboxkit.`` prefix.

Modal's public API does not report a sandbox's name, app name or creation time, so the provider
records them (and the spec's bookkeeping ``labels``) as tags at create time, and hides them from
the user's tags when reading back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

RESERVED = "sandboxkit."
LABEL = f"{RESERVED}label."
APP = f"{RESERVED}app"
NAME = f"{RESERVED}name"
CREATED_AT = f"{RESERVED}created_at"


def encode(
    *, tags: Mapping[str, str], labels: Mapping[str, str], app: str, name: str | None, created_at: float
) -> dict[str, str]:
    """User tags plus bookkeeping, as one Modal tag dict."""
    out = dict(tags)
    out.update({f"{LABEL}{k}": v for k, v in labels.items()})
    out[APP] = app
    out[CREATED_AT] = f"{created_at:.3f}"
    if name:
        out[NAME] = name
    return out


def label_filter(labels: Mapping[str, str]) -> dict[str, str]:
    """Labels as the tag filter Modal's list understands."""
    return {f"{LABEL}{k}": v for k, v in labels.items()}


def user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The user's own tags, bookkeeping removed."""
    return {k: v for k, v in tags.items() if not k.startswith(RESERVED)}


def created_at(tags: Mapping[str, str]) -> dt.datetime | None:
    """When sandboxkit created the sandbox, if it did."""
    raw = tags.get(CREATED_AT)
    try:
        return None if raw is None else dt.datetime.fromtimestamp(float(raw), dt.UTC)
    except ValueError:
        return None
