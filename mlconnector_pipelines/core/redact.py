"""Keep secrets out of messages, logs and metadata."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "***"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each secret (of useful length) with a mask."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text
