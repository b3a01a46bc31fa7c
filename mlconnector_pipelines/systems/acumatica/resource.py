"""Dagster resource for an Acumatica site: its config section; a client (one licence seat) per step."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa

from ...core.catalog import SourceEntity
from ...core.types import ColumnType
from ..resource_base import SystemResource
from .catalog import wrapped_read_fields, written_as_text
from .client import AcumaticaClient, calendar_dates, modified_in, utc_text
from .config import AcumaticaConfig


class AcumaticaResource(SystemResource):
    """An Acumatica tenant reached through its contract-based REST API (OAuth 2.0 or the legacy login)."""

    config_model = AcumaticaConfig

    def client(self) -> AcumaticaClient:
        """A new client for one step; close it when done (it signs out, freeing the licence seat)."""
        cfg = self.section
        secret = self.secret(cfg.auth.client_secret, "acumatica.auth.client_secret") if cfg.auth.client_secret else None
        return AcumaticaClient(
            cfg, password=self.secret(cfg.auth.password, "acumatica.auth.password"), client_secret=secret
        )

    def session(self) -> AcumaticaSession:
        return AcumaticaSession(self.client())

    def journal_target(self):
        from .target import AcumaticaJournalTarget

        return AcumaticaJournalTarget(self.client(), self.section)

    def record_target(self, entity: str, key: str):
        from .target import AcumaticaRecordTarget

        return AcumaticaRecordTarget(self.client(), entity, key)

    def target_for(self, flow: str):
        """The target a flow's documents go to: a reference-records flow's entity, else the GL journals."""
        for records in self.section.reference_records:
            if flow == f"acumatica/{records.name}":
                return self.record_target(records.entity, records.key)
        return self.journal_target()


class AcumaticaSession:
    """What the windowed flow needs from Acumatica (core/source.py's SourceSession): one tenant, one seat."""

    concurrent_companies = 1

    def __init__(self, client: AcumaticaClient):
        self.client = client
        self.client.check_version()  # a wrong endpoint version stops the run here, with the versions published

    def companies(self) -> list[dict]:
        return [{"id": self.client.cfg.tenant, "name": self.client.cfg.tenant}]

    def pages(self, company_id: str, entity: SourceEntity, start: datetime, end: datetime):
        expand = [child.navigation for child in entity.children]
        for page in self.client.window(
            entity.entity_set, entity.modified_field, start, end, expand=expand, read_fields=wrapped_read_fields(entity)
        ):
            yield with_dates_read(page, entity)

    def count(self, company_id: str, entity: SourceEntity, start: datetime, end: datetime) -> int:
        """Acumatica counts nothing itself: the light scan of the window's stamps is the count."""
        field = entity.modified_field
        return len(self.client.stamps(entity.entity_set, field, modified_in(field, start, end)))

    def keys(self, company_id: str, entity: SourceEntity) -> set[str]:
        """Every record's id, in one light request (the contract API answers a whole entity at once; no offset
        is involved, so a deletion meanwhile cannot hide another record)."""
        return {str(r[entity.key]) for r in self.client.records(entity.entity_set, select=[entity.modified_field])}

    def still_held(self, company_id: str, entity: SourceEntity, keys: Sequence[str]) -> set[str]:
        return set()  # the one answer of `keys` lists every record

    def run_metadata(self) -> dict[str, Any]:
        auth = self.client.auth
        figures = {k: getattr(auth, k) for k in ("grants", "refreshes", "logins", "logouts") if hasattr(auth, k)}
        return {
            **self.client.http.stats.as_metadata("http_"),
            **figures,
            "details_read_by_id": self.client.details_read_by_id,
        }

    def close(self) -> None:
        self.client.close()


def with_dates_read(page: pa.Table, entity: SourceEntity) -> pa.Table:
    """A page's date-time fields (read as text, see catalog.written_as_text) as the warehouse takes them:
    moments as canonical UTC text, which sorts and windows as time; business dates as calendar dates."""
    for name in written_as_text(entity):
        if name in page.column_names:
            index = page.column_names.index(name)
            convert = calendar_dates if entity.types.get(name) is ColumnType.DATE else utc_text
            page = page.set_column(index, name, convert(page.column(index)))
    return page


def snapshot_table(client: AcumaticaClient, entity: str) -> pa.Table:
    """Every record of an entity that carries no modified stamp (Subaccount): read whole."""
    return pa.Table.from_pylist(
        [{k: v for k, v in r.items() if not k.endswith(".error")} for r in client.records(entity)]
    )
