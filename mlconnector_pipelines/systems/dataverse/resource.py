"""Dagster resource for a Dataverse organisation: its config section, a client per step."""

from __future__ import annotations

from ..resource_base import SystemResource
from .client import DataverseClient
from .config import DataverseConfig


class DataverseResource(SystemResource):
    """A Dynamics 365 Sales organisation reached with an Entra app that is an Application User there."""

    config_model = DataverseConfig

    def client(self) -> DataverseClient:
        """A new client (and token cache) for one step; close it when done."""
        cfg = self.section
        return DataverseClient(cfg, client_secret=self.secret(cfg.auth.client_secret, "dataverse.auth.client_secret"))
