"""What a simulated service declares about itself (see sandbox/registry.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class Endpoint:
    """Where a service listens, as the product's settings must name it."""

    url: str  # https://host:port of the service's listener
    ca_bundle: Path  # the certificate a client trusts for it
    data_dir: Path  # the product's data folder


@dataclass
class BuildContext:
    """What a simulator's `build` gets besides its settings."""

    data_dir: Path  # the sandbox's data folder (the product's data_dir)
    services: dict[str, Any]  # simulators built so far, by key


@dataclass(frozen=True)
class CliOption:
    """`--<name>` sets the settings at `paths` (dotted, e.g. volumes.documents); the default is the model's."""

    name: str
    paths: tuple[str, ...]
    help: str
    type: type = int


@dataclass(frozen=True)
class SandboxService:
    key: str  # admin path /_sandbox/<key>/…, settings key and CLI option prefix
    title: str
    settings: type[BaseModel]  # the simulator's settings; every field has a default
    simulator: str  # module with `build(settings, BuildContext) -> Simulator`, imported only to serve
    # 0: served on the shared port with a certificate from the sandbox CA. Otherwise its own port at
    # this offset with its own self-signed certificate (as a customer's on-premises server has).
    port_offset: int = 0
    # The product's connector.yaml sections that point it at this service (none for Entra ID).
    profile: Callable[[Endpoint], dict[str, dict]] = lambda endpoint: {}
    # Settings `mlconnector sandbox` offers as options of its own.
    cli: tuple[CliOption, ...] = ()
    # Settings every service shares (seed, history, live mode) that this service takes.
    shared: tuple[str, ...] = ()

    def build(self, settings: BaseModel, context: BuildContext):
        return import_module(self.simulator).build(settings, context)
