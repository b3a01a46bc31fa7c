"""The Service Layer's company databases and their rules, apart from its HTTP answers (simulator.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from . import SapSettings
from .seed import KEYS, SapCompanyData, generate


class ServiceLayerModel:
    """Every company database's records, stamped in the server's own time zone."""

    def __init__(self, settings: SapSettings):
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        s = self.settings
        end = s.history_end or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = s.history_start or end - timedelta(days=28)
        self.companies: dict[str, SapCompanyData] = {
            db: generate(
                db, seed=s.seed + n, start=start, end=end, volumes=s.volumes, server_timezone=s.server_timezone
            )
            for n, db in enumerate(s.company_dbs)
        }
        self.zone = ZoneInfo(s.server_timezone)
        if s.stamped_sets is not None:  # sets SAP's metadata gives no UpdateDate/UpdateTime
            for data in self.companies.values():
                for name, records in data.entities.items():
                    if name not in s.stamped_sets:
                        for record in records:
                            record.pop("UpdateDate", None)
                            record.pop("UpdateTime", None)
        first = self.companies[s.company_dbs[0]]
        self.field_types = {name: field_types(records) for name, records in first.entities.items()}

    def apply(self, mutations) -> None:
        """A `mutate` fault: records change between two requests of a client's extract."""
        for mutation in mutations:
            data = self.companies[mutation.company or self.settings.company_dbs[0]]
            key = KEYS[mutation.entity]
            record = next(r for r in data.entities[mutation.entity] if r[key] == mutation.key)
            record.update(mutation.set)

    def upsert(self, company: str, entity: str, changes: dict) -> dict:
        """Insert a record, or change the one with the same key."""
        records = self.companies[company].entities[entity]
        key = KEYS[entity]
        existing = next((r for r in records if r[key] == changes.get(key)), None)
        if existing is None:
            records.append(changes)
            return changes
        existing.update(changes)
        return existing

    def delete(self, company: str, entity: str, key) -> bool:
        """A user removes a record (a business partner, an item, an account) in the client."""
        records = self.companies[company].entities[entity]
        before = len(records)
        records[:] = [r for r in records if str(r[KEYS[entity]]) != str(key)]
        return len(records) < before


def field_types(records: list[dict]) -> dict[str, str]:
    """Service Layer literal rules: dates and times are quoted strings, numbers bare."""
    types: dict[str, str] = {}
    for record in records[:50]:
        for name, value in record.items():
            if isinstance(value, bool):
                types.setdefault(name, "Edm.Boolean")
            elif isinstance(value, int):
                types.setdefault(name, "Edm.Int32")
            elif isinstance(value, (float, Decimal)):
                types.setdefault(name, "Edm.Double")
            elif isinstance(value, str) or value is None:
                types.setdefault(name, "Edm.String")
    return types
