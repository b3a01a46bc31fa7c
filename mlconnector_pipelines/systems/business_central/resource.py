"""Dagster resource wrapping the BC client with its Entra auth and throttling."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ...config import BusinessCentralConfig
from ...core.tls import ssl_context
from ..entra import EntraTokenProvider
from ..resource_base import ThrottledSystemResource
from .client import SYSTEM, BusinessCentralClient


class BusinessCentralResource(ThrottledSystemResource):
    """A Business Central environment reached with an Entra app registration (client credentials).

    `secret` is the app's client secret."""

    api_base_url: str
    environment: str
    authority_host: str
    tenant_id: str
    client_id: str
    scope: str = "https://api.businesscentral.dynamics.com/.default"
    companies: list[str] = []
    page_size: int = 5000
    concurrent_companies: int = 2
    ca_bundle: Optional[str] = None
    authority_ca_bundle: Optional[str] = None

    @classmethod
    def from_config(cls, cfg: BusinessCentralConfig, credentials_dir: Path) -> "BusinessCentralResource":
        return cls(
            api_base_url=cfg.api_base_url, environment=cfg.environment, authority_host=cfg.auth.authority_host,
            tenant_id=cfg.auth.tenant_id, client_id=cfg.auth.client_id, scope=cfg.scope,
            companies=cfg.companies, page_size=cfg.page_size, concurrent_companies=cfg.concurrent_companies,
            ca_bundle=str(cfg.ca_bundle) if cfg.ca_bundle else None,
            authority_ca_bundle=str(cfg.auth.ca_bundle) if cfg.auth.ca_bundle else None,
            **cls.common_fields(cfg.auth.client_secret, cfg.http, credentials_dir),
        )

    def session(self) -> "BusinessCentralSession":
        return BusinessCentralSession(self.client(), self.companies, self.concurrent_companies)

    def client(self) -> BusinessCentralClient:
        """A new client (and token cache) for one step; close it when done."""
        secret = self.resolved_secret("business_central.auth.client_secret")
        tokens = EntraTokenProvider(
            system=SYSTEM, authority_host=self.authority_host, tenant_id=self.tenant_id,
            client_id=self.client_id, client_secret=secret, scope=self.scope,
            verify=ssl_context(self.authority_ca_bundle, what="business_central.auth"),
        )
        return BusinessCentralClient(
            api_base_url=self.api_base_url, tenant_id=self.tenant_id, environment=self.environment,
            tokens=tokens, page_size=self.page_size, policy=self.policy(),
            verify=ssl_context(self.ca_bundle, what="business_central"), secrets=(secret,),
        )


class BusinessCentralSession:
    """What the windowed flow needs from BC (flows/windowed.py's SourceSession)."""

    def __init__(self, client: BusinessCentralClient, companies: list[str], concurrent_companies: int):
        self.client = client
        self._wanted = companies
        self.concurrent_companies = concurrent_companies

    def companies(self) -> list[dict]:
        return self.client.resolve_companies(self._wanted)

    def pages(self, company_id, entity, start, end):
        return self.client.pages(company_id, entity, start, end)

    def count(self, company_id, entity, start, end) -> int:
        return self.client.count(company_id, entity, modified_from=start, modified_before=end)

    def run_metadata(self) -> dict:
        return {**self.client.http.stats.as_metadata("http_"), "tokens_acquired": self.client.tokens.tokens_acquired}

    def close(self) -> None:
        self.client.close()
