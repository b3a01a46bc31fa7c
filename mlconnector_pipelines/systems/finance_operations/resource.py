"""Dagster resource for an F&O environment: its config section, a client (and journal target) per step."""

from __future__ import annotations

from ..resource_base import SystemResource
from .client import FinanceOperationsClient
from .config import FinanceOperationsConfig
from .target import FinanceOperationsJournalTarget


class FinanceOperationsResource(SystemResource):
    """A Finance & Operations environment reached with an Entra app registration (client credentials)."""

    config_model = FinanceOperationsConfig

    def client(self) -> FinanceOperationsClient:
        """A new client (and token cache) for one step; close it when done."""
        cfg = self.section
        return FinanceOperationsClient(
            cfg, client_secret=self.secret(cfg.auth.client_secret, "finance_operations.auth.client_secret")
        )

    def journal_target(self) -> FinanceOperationsJournalTarget:
        return FinanceOperationsJournalTarget(self.client(), self.section)
