"""Dagster resource for a SAP Business One Service Layer: one session per step, closed at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ...config import SapBusinessOneConfig
from ..resource_base import ThrottledSystemResource
from .client import ServiceLayerClient


class SapBusinessOneResource(ThrottledSystemResource):
    """A Service Layer (`/b1s/v1` or `/b1s/v2`) logged into one company database. `secret` is the password."""

    base_url: str
    company_db: str
    username: str
    page_size: int = 500
    server_timezone: str = "UTC"
    ca_bundle: Optional[str] = None
    pinned_sha256: Optional[str] = None

    @classmethod
    def from_config(cls, cfg: SapBusinessOneConfig, credentials_dir: Path) -> "SapBusinessOneResource":
        return cls(base_url=cfg.base_url, company_db=cfg.company_db, username=cfg.username,
                   page_size=cfg.page_size, server_timezone=cfg.server_timezone,
                   ca_bundle=str(cfg.ca_bundle) if cfg.ca_bundle else None, pinned_sha256=cfg.pinned_sha256,
                   **cls.common_fields(cfg.password, cfg.http, credentials_dir))

    def client(self) -> ServiceLayerClient:
        return ServiceLayerClient(
            base_url=self.base_url, company_db=self.company_db, username=self.username,
            password=self.resolved_secret("sap_business_one.password"), page_size=self.page_size,
            server_timezone=self.server_timezone, ca_bundle=self.ca_bundle, pinned_sha256=self.pinned_sha256,
            policy=self.policy())

    def session(self) -> "SapBusinessOneSession":
        return SapBusinessOneSession(self.client(), self.company_db)


class SapBusinessOneSession:
    """What the windowed flow needs from SAP B1. The company database is the one "company"."""

    concurrent_companies = 1

    def __init__(self, client: ServiceLayerClient, company_db: str):
        self.client = client
        self._company = {"id": company_db, "name": company_db}

    def companies(self) -> list[dict]:
        return [self._company]

    def pages(self, company_id, entity, start, end):
        return self.client.pages(entity, start, end)

    def count(self, company_id, entity, start, end) -> None:
        return None  # UpdateDate is a date: the server cannot count a half-open window of moments

    def run_metadata(self) -> dict:
        return {**self.client.http.stats.as_metadata("http_"), "logins": self.client.session.logins}

    def close(self) -> None:
        self.client.close()
