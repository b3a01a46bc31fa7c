"""Business Central's state and rules, apart from its HTTP answers (simulator.py).

Companies hold their entity sets as tables sorted by (lastModifiedDateTime, id); the model
assigns ids, stamps modifications, numbers new customers from the series and refuses a key
that exists, as BC does.
"""

from __future__ import annotations

import bisect
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources

from ..core.odata_filter import Comparison
from . import BusinessCentralSettings
from .seed import LINE_ENTITY, CompanyData, generate_company, iso_ms, share_ids

LMD = "lastModifiedDateTime"


class KeyExists(Exception):
    """A record with the same identification fields exists (BC's Internal_EntityWithSameKeyExists)."""


class EntityTable:
    """One company's records of one entity set, kept sorted by (lastModifiedDateTime, id).

    That order makes a window filter a bisect and makes the skip token a stable key, so a
    record modified while a client pages moves behind the cursor instead of shifting pages.
    """

    def __init__(self, records: list[dict]):
        records = sorted(records, key=lambda r: (r[LMD], r["id"]))
        self.keys = [(r[LMD], r["id"]) for r in records]
        self.records = records
        self.by_id = {r["id"]: r for r in records}

    def __len__(self) -> int:
        return len(self.records)

    def upsert(self, record: dict) -> None:
        old = self.by_id.get(record["id"])
        if old is not None:
            index = bisect.bisect_left(self.keys, (old[LMD], old["id"]))
            del self.keys[index], self.records[index]
        key = (record[LMD], record["id"])
        index = bisect.bisect_left(self.keys, key)
        self.keys.insert(index, key)
        self.records.insert(index, record)
        self.by_id[record["id"]] = record

    def delete(self, record_id: str) -> bool:
        old = self.by_id.pop(record_id, None)
        if old is None:
            return False
        index = bisect.bisect_left(self.keys, (old[LMD], old["id"]))
        del self.keys[index], self.records[index]
        return True

    def scan(self, comparisons: list[Comparison], after: tuple[str, str] | None):
        """Records matching every comparison, in key order, strictly after the skip-token key."""
        lo, hi = 0, len(self.keys)
        rest = []
        for c in comparisons:
            if c.field == LMD and c.kind == "datetime" and c.op in ("ge", "gt", "lt", "le"):
                # ("~" sorts after every GUID, "" before): turn a timestamp bound into a key bound.
                if c.op == "ge":
                    lo = max(lo, bisect.bisect_left(self.keys, (c.value, "")))
                elif c.op == "gt":
                    lo = max(lo, bisect.bisect_right(self.keys, (c.value, "~")))
                elif c.op == "lt":
                    hi = min(hi, bisect.bisect_left(self.keys, (c.value, "")))
                else:
                    hi = min(hi, bisect.bisect_right(self.keys, (c.value, "~")))
            else:
                rest.append(c)
        if after is not None:
            lo = max(lo, bisect.bisect_right(self.keys, after))
        for index in range(lo, hi):
            record = self.records[index]
            if all(c.matches(record) for c in rest):
                yield record


@dataclass
class Company:
    data: CompanyData
    tables: dict[str, EntityTable] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: CompanyData) -> Company:
        return cls(data, {name: EntityTable(records) for name, records in data.entities.items()})


def bc_field_types() -> dict[str, dict[str, str]]:
    """entity set -> field -> Edm type, from the packaged copy of shared/specs' BC spec."""
    spec = json.loads(
        resources.files(__package__).joinpath("specs/business-central-api-v2.0.entities.json").read_text()
    )
    return {e["entitySet"]: {f["name"]: f["type"] for f in e["fields"]} for e in spec["entities"]}


def seed_companies(settings: BusinessCentralSettings) -> dict[str, Company]:
    start, end = settings.history()
    generated = [
        generate_company(index, seed=settings.seed, start=start, end=end, volumes=settings.volumes)
        for index in range(settings.companies)
    ]
    if len(generated) > 1:
        share_ids(generated[0], generated[1])  # the second company began as a copy of the first
    return {data.id: Company.from_data(data) for data in generated}


class BusinessCentralModel:
    """Every company's records; the rules a write must pass."""

    def __init__(self, settings: BusinessCentralSettings):
        self.settings = settings
        self.field_types = bc_field_types()
        self.companies = seed_companies(settings)

    def reset(self) -> None:
        self.companies = seed_companies(self.settings)

    def upsert(
        self,
        company_id: str,
        entity_set: str,
        changes: dict,
        lines: list[dict] | None = None,
        modified_at: str | None = None,
    ) -> dict:
        """Insert or change a record, stamped now (or at `modified_at`); a new record gets its id here."""
        company = self.companies[company_id]
        table = company.tables[entity_set]
        stamp = modified_at or iso_ms(datetime.now(UTC))
        existing = table.by_id.get(changes.get("id", ""))
        record = dict(existing) if existing else {name: None for name in self.field_types[entity_set]}
        record.update(changes)
        if not record.get("id"):  # a new record: the service assigns its id
            record["id"] = str(uuid.uuid4())
        record[LMD] = stamp
        table.upsert(record)
        if lines is not None and entity_set in LINE_ENTITY:
            company.data.lines[entity_set][record["id"]] = [dict(line, documentId=record["id"]) for line in lines]
        return record

    def create_customer(self, company_id: str, body: dict) -> dict:
        """A new customer, numbered from the series when no number is given; a number in use is refused."""
        table = self.companies[company_id].tables["customers"]
        number = body.get("number") or next_number([r.get("number") for r in table.records])
        if any(r.get("number") == number for r in table.records):
            raise KeyExists(
                f"The record in table Customer already exists. Identification fields and values: No.='{number}'"
            )
        return self.upsert(company_id, "customers", {**body, "id": "", "number": number})


def next_number(numbers: list) -> str:
    """The customer number series: the highest numeric No. plus 10, as BC's default series steps."""
    numeric = [int(n) for n in numbers if isinstance(n, str) and n.isdigit()]
    return str(max(numeric, default=10000) + 10)
