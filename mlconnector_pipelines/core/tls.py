"""TLS trust: the system store plus, per system, the customer's extra CA bundle. Never verify=False."""

from __future__ import annotations

import ssl
from pathlib import Path

from .errors import ConfigError


def ssl_context(ca_bundle: str | Path | None, *, what: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_bundle:
        path = Path(ca_bundle)
        if not path.is_file():
            hint = " (start the sandbox first: `mlconnector sandbox`)" if "sandbox" in str(path) else ""
            raise ConfigError(f"{what}.ca_bundle: {path} does not exist{hint}")
        context.load_verify_locations(cafile=str(path))
    return context
