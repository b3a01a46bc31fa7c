"""Every simulated service, each declared once by its own folder under `sandbox/`.

The sandbox server, the `mlconnector sandbox` command and the product's sandbox profile iterate
`SERVICES` and name no service. A new service is a folder with `__init__.py` declaring its
`SandboxService` as SERVICE (light: no web framework imported) and its simulator module, plus
its name in FOLDERS below.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from .core.declaration import BuildContext, CliOption, Endpoint, SandboxService

__all__ = ["BuildContext", "CliOption", "Endpoint", "SandboxService", "SERVICES", "BY_KEY", "DEFAULT_PORT"]

DEFAULT_PORT = 47800

# Built in this order (a service may use one built before it: BC and F&O use Entra ID).
FOLDERS = (
    "entra",
    "business_central",
    "finance_operations",
    "looker",
    "sap_business_one",
    "acumatica",
    "dataverse",
)

SERVICES: tuple[SandboxService, ...] = tuple(import_module(f"{__package__}.{folder}").SERVICE for folder in FOLDERS)
BY_KEY = {service.key: service for service in SERVICES}


def certificate_name(service: SandboxService) -> str | None:
    """The file stem of the service's own self-signed certificate; None: the sandbox CA signs it."""
    return service.key if service.port_offset else None


def endpoint(service: SandboxService, main_url: str, data_dir: Path) -> Endpoint:
    """The service's endpoint when the shared port is at `main_url`."""
    host, _, port = main_url.rstrip("/").rpartition(":")
    url = f"{host}:{int(port) + service.port_offset}" if service.port_offset and port.isdigit() else main_url
    own = certificate_name(service)
    ca = data_dir / "sandbox" / (f"{own}.pem" if own else "ca.pem")
    return Endpoint(url=url.rstrip("/"), ca_bundle=ca, data_dir=data_dir)


def sandbox_profile(data_dir: Path, main_url: str) -> dict[str, dict]:
    """The product settings sections that point every system at the sandbox on `main_url`."""
    sections: dict[str, dict] = {}
    for service in SERVICES:
        sections.update(service.profile(endpoint(service, main_url, data_dir)))
    return sections
