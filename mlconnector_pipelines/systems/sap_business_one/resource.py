"""Dagster resource for a SAP Business One Service Layer: one session per company database and step."""

from __future__ import annotations

from ..resource_base import SystemResource
from .client import ServiceLayerClient
from .config import SapBusinessOneConfig


class SapBusinessOneResource(SystemResource):
    """A Service Layer (`/b1s/v1` or `/b1s/v2`) and its company databases."""

    config_model = SapBusinessOneConfig

    def client(self, company_db: str | None = None) -> ServiceLayerClient:
        """A client logged into one company database (the first configured by default) on first use."""
        cfg = self.section
        return ServiceLayerClient(
            cfg,
            company_db=company_db or cfg.company_dbs[0],
            password=self.secret(cfg.password, "sap_business_one.password"),
        )

    def session(self) -> SapBusinessOneSession:
        return SapBusinessOneSession(self)


class SapBusinessOneSession:
    """What the windowed flow needs from SAP B1. Each company database is a company.

    A database's client (and its Service Layer session) opens when its first page is read and
    serves every entity of the step, so a run logs in once per database.
    """

    concurrent_companies = 1  # sessions use licences: one database at a time

    def __init__(self, resource: SapBusinessOneResource):
        self._resource = resource
        self._company_dbs = resource.section.company_dbs
        self._clients: dict[str, ServiceLayerClient] = {}

    def companies(self) -> list[dict]:
        return [{"id": db, "name": db} for db in self._company_dbs]

    def client(self, company_db: str) -> ServiceLayerClient:
        if company_db not in self._clients:
            self._clients[company_db] = self._resource.client(company_db)
        return self._clients[company_db]

    def pages(self, company_id, entity, start, end):
        return self.client(company_id).pages(entity, start, end)

    def keys(self, company_id, entity) -> set[str]:
        return self.client(company_id).keys(entity)

    def still_held(self, company_id, entity, keys) -> set[str]:
        return set()  # keys are read by key (`gt` the last one read): a deletion meanwhile hides none

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
