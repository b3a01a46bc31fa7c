"""Dagster resource for a SAP Business One Service Layer: one session per company database and step."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ...config import SapBusinessOneConfig
from ..resource_base import ThrottledSystemResource
from .client import ServiceLayerClient


class SapBusinessOneResource(ThrottledSystemResource):
    """A Service Layer (`/b1s/v1` or `/b1s/v2`) and its company databases. `secret` is the password."""

    base_url: str
    company_dbs: list[str]
    username: str
    page_size: int = 500
    server_timezone: str = "UTC"
    ca_bundle: Optional[str] = None
    pinned_sha256: Optional[str] = None

    @classmethod
    def from_config(cls, cfg: SapBusinessOneConfig, credentials_dir: Path) -> "SapBusinessOneResource":
        return cls(base_url=cfg.base_url, company_dbs=cfg.company_dbs, username=cfg.username,
                   page_size=cfg.page_size, server_timezone=cfg.server_timezone,
                   ca_bundle=str(cfg.ca_bundle) if cfg.ca_bundle else None, pinned_sha256=cfg.pinned_sha256,
                   **cls.common_fields(cfg.password, cfg.http, credentials_dir))

    def client(self, company_db: str | None = None) -> ServiceLayerClient:
        """A client logged into one company database (the first configured by default) on first use."""
        return ServiceLayerClient(
            base_url=self.base_url, company_db=company_db or self.company_dbs[0], username=self.username,
            password=self.resolved_secret("sap_business_one.password"), page_size=self.page_size,
            server_timezone=self.server_timezone, ca_bundle=self.ca_bundle, pinned_sha256=self.pinned_sha256,
            policy=self.policy())

    def session(self) -> "SapBusinessOneSession":
        return SapBusinessOneSession(self)


class SapBusinessOneSession:
    """What the windowed flow needs from SAP B1. Each company database is a company.

    A database's client (and its Service Layer session) opens when its first page is read and
    serves every entity of the step, so a run logs in once per database.
    """

    concurrent_companies = 1  # sessions use licences: one database at a time

    def __init__(self, resource: SapBusinessOneResource):
        self._resource = resource
        self._clients: dict[str, ServiceLayerClient] = {}

    def companies(self) -> list[dict]:
        return [{"id": db, "name": db} for db in self._resource.company_dbs]

    def client(self, company_db: str) -> ServiceLayerClient:
        if company_db not in self._clients:
            self._clients[company_db] = self._resource.client(company_db)
        return self._clients[company_db]

    def pages(self, company_id, entity, start, end):
        return self.client(company_id).pages(entity, start, end)

    def count(self, company_id, entity, start, end) -> None:
        return None  # UpdateDate is a date: the server cannot count a half-open window of moments

    def run_metadata(self) -> dict:
        totals: dict[str, float] = {}
        for client in self._clients.values():
            for name, value in client.http.stats.as_metadata("http_").items():
                totals[name] = totals.get(name, 0) + value
        return {**totals, "logins": sum(c.session.logins for c in self._clients.values())}

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
