"""Every system the product connects to, each declared once by its own folder.

`definitions.py`, `ping.py`, `config.py` and the CLI iterate `SYSTEMS` and name no system. A new
system is a folder `systems/<system>/` (config, client, resource, ping, a `system.py` declaring
its `SystemSpec` as SPEC), its flows under `flows/`, its simulator under `sandbox/`, and its
name in FOLDERS below.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import import_module
from typing import Any

from .spec import FlowContext, SystemSpec

__all__ = ["FlowContext", "SystemSpec", "SYSTEMS", "enabled_sections"]

# The registered systems' folders, in the order ping reports them. Adding a system adds its name here.
FOLDERS = (
    "business_central",
    "sap_business_one",
    "looker",
    "finance_operations",
    "acumatica",
    "dataverse",
)

SYSTEMS: tuple[SystemSpec, ...] = tuple(import_module(f"{__package__}.{folder}.system").SPEC for folder in FOLDERS)


def enabled_sections(cfg) -> Iterable[tuple[SystemSpec, Any]]:
    """(spec, section) for every system configured and enabled in a ConnectorConfig."""
    for spec in SYSTEMS:
        section = getattr(cfg, spec.key, None)
        if section is not None and section.enabled:
            yield spec, section
