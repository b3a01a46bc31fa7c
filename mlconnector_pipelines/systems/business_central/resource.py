"""Dagster resource for a Business Central environment: its config section, a client per step."""

from __future__ import annotations

from ..resource_base import SystemResource
from .client import BusinessCentralClient
from .config import BusinessCentralConfig


class BusinessCentralResource(SystemResource):
    """A Business Central environment reached with an Entra app registration (client credentials)."""

    config_model = BusinessCentralConfig

    def session(self) -> BusinessCentralSession:
        cfg = self.section
        return BusinessCentralSession(self.client(), cfg.companies, cfg.concurrent_companies)

    def client(self) -> BusinessCentralClient:
        """A new client (and token cache) for one step; close it when done."""
        cfg = self.section
        return BusinessCentralClient(
            cfg, client_secret=self.secret(cfg.auth.client_secret, "business_central.auth.client_secret")
        )


class BusinessCentralSession:
    """What the windowed flow needs from BC (core/source.py's SourceSession)."""

    def __init__(self, client: BusinessCentralClient, companies: list[str], concurrent_companies: int):
        self.client = client
        self._wanted = companies
        self.concurrent_companies = concurrent_companies

    def companies(self) -> list[dict]:
        return self.client.resolve_companies(self._wanted)

    def pages(self, company_id, entity, start, end):
        return self.client.pages(company_id, entity, start, end)

    def keys(self, company_id, entity) -> set[str]:
        return self.client.keys(company_id, entity)

    def still_held(self, company_id, entity, keys) -> set[str]:
        return self.client.held(company_id, entity, keys)

    def count(self, company_id, entity, start, end) -> int:
        return self.client.count(company_id, entity, modified_from=start, modified_before=end)

    def run_metadata(self) -> dict:
        return {**self.client.http.stats.as_metadata("http_"), "tokens_acquired": self.client.tokens.tokens_acquired}

    def close(self) -> None:
        self.client.close()
