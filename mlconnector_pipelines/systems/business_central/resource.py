"""Dagster resource wrapping the BC client with its Entra auth and throttling."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import Field

from ...config import BusinessCentralConfig
from ...core.credentials import CredentialStore
from ...core.errors import ConfigError
from ...core.http import HttpPolicy
from ...core.tls import ssl_context
from ..entra import EntraTokenProvider
from .client import SYSTEM, BusinessCentralClient


class BusinessCentralResource(dg.ConfigurableResource):
    """A Business Central environment reached with an Entra app registration (client credentials)."""

    api_base_url: str
    environment: str
    authority_host: str
    tenant_id: str
    client_id: str
    client_secret: Optional[str] = Field(
        None, description="From an environment variable (dagster.EnvVar), resolved at run time; never shown.")
    client_secret_credential: Optional[str] = Field(
        None, description="Name of the secret in the encrypted credential store, read at run time.")
    credentials_dir: Optional[str] = None
    scope: str = "https://api.businesscentral.dynamics.com/.default"
    companies: list[str] = []
    page_size: int = 5000
    ca_bundle: Optional[str] = None
    authority_ca_bundle: Optional[str] = None
    timeout_seconds: float = 120.0
    max_attempts: int = 8
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 60.0
    max_retry_after_seconds: float = 300.0
    requests_per_minute: Optional[int] = None
    requests_burst: Optional[int] = None

    @classmethod
    def from_config(cls, cfg: BusinessCentralConfig, credentials_dir: Path) -> "BusinessCentralResource":
        ref = cfg.auth.client_secret
        if ref.credential:
            secret = None
        elif ref.sandbox_default and not os.environ.get(ref.env):
            secret = ref.sandbox_default  # the public demo secret of the local sandbox
        else:
            # An EnvVar: Dagster resolves it when a run starts and shows only the variable's name.
            secret = dg.EnvVar(ref.env)
        return cls(
            api_base_url=cfg.api_base_url, environment=cfg.environment, authority_host=cfg.auth.authority_host,
            tenant_id=cfg.auth.tenant_id, client_id=cfg.auth.client_id, client_secret=secret,
            client_secret_credential=ref.credential, credentials_dir=str(credentials_dir), scope=cfg.scope,
            companies=cfg.companies, page_size=cfg.page_size,
            ca_bundle=str(cfg.ca_bundle) if cfg.ca_bundle else None,
            authority_ca_bundle=str(cfg.auth.ca_bundle) if cfg.auth.ca_bundle else None,
            timeout_seconds=cfg.http.timeout_seconds, max_attempts=cfg.http.max_attempts,
            backoff_base_seconds=cfg.http.backoff_base_seconds, backoff_cap_seconds=cfg.http.backoff_cap_seconds,
            max_retry_after_seconds=cfg.http.max_retry_after_seconds, requests_per_minute=cfg.http.requests_per_minute,
            requests_burst=cfg.http.requests_burst,
        )

    def _secret(self) -> str:
        if self.client_secret_credential:
            return CredentialStore(Path(self.credentials_dir or ".")).get(self.client_secret_credential)
        if not self.client_secret:
            raise ConfigError("business_central.auth.client_secret: no secret configured")
        return self.client_secret

    def session(self) -> "BusinessCentralSession":
        return BusinessCentralSession(self.client(), self.companies)

    def client(self) -> BusinessCentralClient:
        """A new client (and token cache) for one step; close it when done."""
        secret = self._secret()
        tokens = EntraTokenProvider(
            system=SYSTEM, authority_host=self.authority_host, tenant_id=self.tenant_id,
            client_id=self.client_id, client_secret=secret, scope=self.scope,
            verify=ssl_context(self.authority_ca_bundle, what="business_central.auth"),
        )
        policy = HttpPolicy(
            timeout_seconds=self.timeout_seconds, max_attempts=self.max_attempts,
            backoff_base_seconds=self.backoff_base_seconds, backoff_cap_seconds=self.backoff_cap_seconds,
            max_retry_after_seconds=self.max_retry_after_seconds, requests_per_minute=self.requests_per_minute,
            requests_burst=self.requests_burst,
        )
        return BusinessCentralClient(
            api_base_url=self.api_base_url, tenant_id=self.tenant_id, environment=self.environment,
            tokens=tokens, page_size=self.page_size, policy=policy,
            verify=ssl_context(self.ca_bundle, what="business_central"), secrets=(secret,),
        )


class BusinessCentralSession:
    """What the windowed flow needs from BC (flows/windowed.py's SourceSession)."""

    def __init__(self, client: BusinessCentralClient, companies: list[str]):
        self.client = client
        self._wanted = companies

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
