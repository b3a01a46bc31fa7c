"""Acumatica's records and what a PUT does to them, apart from HTTP.

A PUT finds its record by `id`, by the values of the key fields or by a $filter; found, it is
updated, not found, it is inserted (acumatica-facts §5). A document whose number comes from a
numbering sequence (a bill, a payment, a GL batch) always takes the next number when inserted:
a number the client sends that matches no record does not create that number. Each entity's own
rules (rules.py) derive values and name the fields they refuse; a refused PUT stores nothing.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal

from . import AcumaticaSettings, seed
from .contract import DETAIL_KEYS, LATEST, Entity, detail, entities
from .wire import given, parse_stamp, round_money

READ_ONLY = {"CreatedDateTime", "LastModifiedDateTime", "LastModified"}
UPPER_KEYS = {"VendorID", "InventoryID", "AccountCD", "ClassID"}


class NotFound(Exception):
    """No record satisfies the keys, the id or the filter."""


class Conflict(Exception):
    """If-None-Match: * and the record exists, or If-Match: * and it does not (412)."""


@dataclass
class Problems:
    fields: dict[str, str] = field(default_factory=dict)
    lines: dict[int, dict[str, str]] = field(default_factory=dict)
    record: list[str] = field(default_factory=list)

    def line(self, index: int, name: str, message: str) -> None:
        self.lines.setdefault(index, {})[name] = message

    def __bool__(self) -> bool:
        return bool(self.fields or self.lines or self.record)


class Invalid(Exception):
    """A PUT the business logic refused (422): the record as it would have been, and why not."""

    def __init__(self, entity: Entity, candidate: dict, problems: Problems, inserting: bool):
        super().__init__(str(problems))
        self.entity, self.candidate, self.problems = entity, candidate, problems
        verb = "Inserting" if inserting else "Updating"
        self.summary = f"{verb} '{entity.label}' record raised at least one error. Please review the errors."


@dataclass
class Context:
    """What a request brings besides its body: the business date and the current branch."""

    now: datetime
    business_date: date
    branch: str


def fold(value):
    return value.casefold() if isinstance(value, str) else value


class Table:
    """One entity's records by id, with an index on the key fields (compared case-insensitively)."""

    def __init__(self, entity: Entity, rows: list[dict] = ()):
        self.entity = entity
        self.rows: dict[str, dict] = {}
        self.index: dict[tuple, str] = {}
        for row in rows:
            self.put(row)

    def key(self, row: dict) -> tuple:
        return tuple(fold(row.get(name)) for name in self.entity.keys)

    def find(self, key: tuple) -> dict | None:
        found = self.index.get(tuple(fold(v) for v in key))
        return self.rows.get(found) if found else None

    def put(self, row: dict) -> dict:
        old = self.rows.get(row["id"])
        if old is not None and self.entity.keys:
            self.index.pop(self.key(old), None)
        self.rows[row["id"]] = row
        if self.entity.keys:
            self.index[self.key(row)] = row["id"]
        return row

    def remove(self, row: dict) -> None:
        self.rows.pop(row["id"], None)
        if self.entity.keys:
            self.index.pop(self.key(row), None)

    def ordered(self) -> list[dict]:
        """The order a real site answers in without being asked: the key fields'."""
        return sorted(self.rows.values(), key=lambda r: tuple(str(fold(v) or "") for v in self.key(r)))


@dataclass
class Operation:
    """A long-running action (a release): done when its time has passed and the model settles it."""

    entity: str
    action: str
    record_id: str
    due: float
    error: str | None = None
    done: bool = False


class AcumaticaModel:
    def __init__(self, settings: AcumaticaSettings):
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        from . import rules  # here, not at the top: the rules import this module's types

        self.rules = rules
        self.entities = dict(entities(LATEST))  # a copy: `number_keys` changes it, never the contract
        data = seed.build(self.settings)
        data["CompaniesStructure"] = []
        self.tables = {name: Table(entity, data.get(name, [])) for name, entity in self.entities.items()}
        self.branches = {r["BranchID"].casefold(): r for r in seed.companies_structure(self.settings.branches)}
        self.next_numbers = {
            name: 1 + max((int(r[e.numbered]) for r in self.tables[name].rows.values()), default=0)
            for name, e in self.entities.items()
            if e.numbered
        }
        self.operations: dict[str, Operation] = {}

    def number_keys(self, names: list[str]) -> None:
        """Dialect `numbered_keys`: these entities' key is filled by a numbering sequence from now on (the
        others keyed as sent). A new number continues after the digits of the highest key held."""
        contract = entities(LATEST)
        for name in names:
            if name not in contract or len(contract[name].keys) != 1 or contract[name].numbered:
                raise ValueError(f"{name} is not an entity with one key typed in by hand")
        for name, entity in contract.items():
            numbered = name in names
            self.entities[name] = replace(entity, numbered=entity.keys[0]) if numbered else entity
            if numbered and name not in self.next_numbers:
                digits = ("".join(ch for ch in str(r[entity.keys[0]]) if ch.isdigit()) for r in self.rows(name))
                self.next_numbers[name] = 1 + max((int(d) for d in digits if d), default=0)

    # -- lookups the rules use ---------------------------------------------------------------------

    def get(self, entity: str, *key) -> dict | None:
        return self.tables[entity].find(key)

    def branch(self, value: str | None) -> dict | None:
        """A branch by its ID or its name (PX-CbApiBranch sends the name)."""
        if not value:
            return None
        found = self.branches.get(value.casefold())
        return found or next(
            (b for b in self.branches.values() if b["BranchName"].casefold() == value.casefold()), None
        )

    def period(self, period_id: str) -> dict | None:
        year = self.get("FinancialPeriod", period_id[2:])
        if year is None:
            return None
        return next((p for p in year["Details"] if p["FinancialPeriodID"] == period_id), None)

    # -- finding -----------------------------------------------------------------------------------

    def by_id(self, entity: str, record_id: str) -> dict:
        row = self.tables[entity].rows.get(str(record_id).lower())
        if row is None:
            raise NotFound(record_id)
        return row

    def by_keys(self, entity: str, values: list[str]) -> dict:
        keys = self.entities[entity].keys
        if len(values) != len(keys):
            raise NotFound(values)
        typed = [self._key_value(entity, name, value) for name, value in zip(keys, values, strict=True)]
        row = self.tables[entity].find(tuple(typed))
        if row is None:
            raise NotFound(values)
        return row

    def _key_value(self, entity: str, name: str, value: str):
        if name == "SubaccountCD":
            return self.rules.subaccount_cd(value)
        return value

    def rows(self, entity: str) -> list[dict]:
        return self.tables[entity].ordered()

    # -- PUT ---------------------------------------------------------------------------------------

    def put(self, entity_name: str, incoming: dict, ctx: Context, matched: dict | None = None, mode: str = "") -> dict:
        """Insert or update as a PUT does; `matched`: the record a $filter found. `mode`: 'insert' or
        'update' when If-None-Match / If-Match say so. Returns the stored record; raises Invalid."""
        entity = self.entities[entity_name]
        incoming = given(incoming)
        existing = matched or self._existing(entity, incoming)
        if (mode == "insert" and existing is not None) or (mode == "update" and existing is None):
            raise Conflict(entity_name)
        candidate = self._merge(entity, existing, incoming)
        problems = Problems()
        if existing is None:
            self._new_key(entity, candidate, problems)
        check = getattr(self.rules, f"check_{entity_name.lower()}", self.rules.check_default)
        check(self, candidate, existing, ctx, problems)
        if problems:
            raise Invalid(entity, candidate, problems, existing is None)
        if existing is None:
            candidate["id"] = str(uuid.uuid4())
            if entity.numbered:
                candidate[entity.numbered] = self._take_number(entity_name)
            if "CreatedDateTime" in entity.fields:
                candidate["CreatedDateTime"] = ctx.now
        for stamp in entity.stamps:
            candidate[stamp] = ctx.now
        return self.tables[entity_name].put(candidate)

    def _existing(self, entity: Entity, incoming: dict) -> dict | None:
        if incoming.get("id"):
            return self.tables[entity.name].rows.get(str(incoming["id"]).lower())
        if not entity.keys or any(incoming.get(k) in (None, "") for k in entity.keys if k != "Module"):
            return None
        values = [incoming.get(k) or ("GL" if k == "Module" else "") for k in entity.keys]
        return self.tables[entity.name].find(
            tuple(self._key_value(entity.name, k, v) for k, v in zip(entity.keys, values, strict=True))
        )

    def _new_key(self, entity: Entity, candidate: dict, problems: Problems) -> None:
        if entity.numbered:
            candidate[entity.numbered] = None  # the sequence gives the number once the record is valid
            return
        for name in entity.keys:
            if candidate.get(name) in (None, ""):
                problems.fields[name] = f"'{_label(name)}' cannot be empty."

    def _take_number(self, entity_name: str) -> str:
        number = self.next_numbers[entity_name]
        self.next_numbers[entity_name] = number + 1
        return f"{number:06d}"

    def _merge(self, entity: Entity, existing: dict | None, incoming: dict) -> dict:
        candidate = {k: v for k, v in (existing or {}).items() if k not in entity.details}
        for name, value in incoming.items():
            if name in entity.keys and existing is not None:
                continue  # found case-insensitively: the stored key keeps its own spelling
            if name in UPPER_KEYS and isinstance(value, str):
                value = value.upper()  # the input mask of an ID segment upper-cases what is typed
            if name in entity.scalars and name not in READ_ONLY:
                candidate[name] = round_money(name, value)
            elif name == "note":
                candidate["note"] = value
        for name, child in entity.details.items():
            lines = [dict(line) for line in (existing or {}).get(name) or []]
            if name in incoming:
                lines = _merge_lines(detail(LATEST, child), lines, incoming[name])
            if lines or name in (existing or {}) or name in incoming:
                candidate[name] = lines
        return candidate

    def delete(self, entity_name: str, row: dict) -> None:
        self.rules.check_delete(self, entity_name, row)
        self.tables[entity_name].remove(row)

    # -- actions -----------------------------------------------------------------------------------

    def start(self, entity: str, action: str, row: dict) -> str:
        """Queue a long-running action; its outcome is known once `action_seconds` have passed."""
        operation_id = str(uuid.uuid4())
        self.operations[operation_id] = Operation(
            entity, action, row["id"], time.monotonic() + self.settings.action_seconds
        )
        return operation_id

    def settle(self, now: datetime | None = None) -> None:
        """Finish every operation whose time has come (each request settles before it is served)."""
        moment = time.monotonic()
        for operation in self.operations.values():
            if not operation.done and operation.due <= moment:
                operation.done = True
                row = self.tables[operation.entity].rows.get(operation.record_id)
                operation.error = self.rules.run_action(self, operation, row, now or seed.now_stamp())

    # -- admin -------------------------------------------------------------------------------------

    def put_raw(self, entity_name: str, raw: dict, now: datetime) -> dict:
        """Store a record as given (types converted, no rules): tests plant exact stamps and amounts."""
        entity = self.entities[entity_name]
        record = raw_record(entity, raw)
        existing = self._existing(entity, record)
        merged = {**(existing or {}), **record}
        merged["id"] = (existing or {}).get("id") or str(record.get("id") or uuid.uuid4()).lower()
        for stamp in entity.stamps:
            merged.setdefault(stamp, now)
        if entity.numbered and not merged.get(entity.numbered):
            merged[entity.numbered] = self._take_number(entity_name)
        return self.tables[entity_name].put(merged)

    def mutate(self, entity_name: str, key, changes: dict) -> None:
        """A `mutate` fault: change a record between two requests, as another user would."""
        entity = self.entities[entity_name]
        values = key if isinstance(key, list) else [key]
        try:
            row = self.by_id(entity_name, values[0]) if len(values) == 1 and _is_guid(values[0]) else None
            row = row or self.by_keys(entity_name, [str(v) for v in values])
        except NotFound:
            return
        self.tables[entity_name].put({**row, **raw_record(entity, changes)})

    def set_period(self, period_id: str, closed: bool, now: datetime) -> dict:
        year = self.get("FinancialPeriod", period_id[2:])
        if year is None or self.period(period_id) is None:
            raise NotFound(period_id)
        status = "Closed" if closed else "Open"
        lines = [
            {**p, "Status": status} | {f"ClosedIn{m}": closed for m in ("AP", "AR", "CA", "FA", "IN")}
            if p["FinancialPeriodID"] == period_id
            else p
            for p in year["Details"]
        ]
        self.tables["FinancialPeriod"].put({**year, "Details": lines, "LastModifiedDateTime": now})
        return self.period(period_id)


def _merge_lines(child: Entity, lines: list[dict], incoming: list[dict]) -> list[dict]:
    """Detail lines of a PUT: matched by id or by the line's key; `"delete": true` removes one."""
    key = DETAIL_KEYS.get(child.name)
    for line in incoming:
        line = given(line)
        found = next((old for old in lines if line.get("id") and old["id"] == str(line["id"]).lower()), None)
        if found is None and key and line.get(key) is not None:
            found = next((old for old in lines if old.get(key) == line[key]), None)
        if line.get("delete") is True:
            if found is not None:
                lines.remove(found)
            continue
        values = {k: round_money(k, v) for k, v in line.items() if k in child.scalars}
        if found is not None:
            found.update(values)
        else:
            lines.append({"id": str(uuid.uuid4()), **values})
    return lines


def raw_record(entity: Entity, raw: dict) -> dict:
    """Plain JSON values (admin API, faults) as the model holds them."""
    record = {}
    for name, value in raw.items():
        if name in entity.details and isinstance(value, list):
            child = detail(LATEST, entity.details[name])
            record[name] = [{"id": str(line.get("id") or uuid.uuid4()), **raw_record(child, line)} for line in value]
        elif name in entity.scalars:
            record[name] = _raw_value(entity, name, value)
        elif name in ("id", "note"):
            record[name] = str(value).lower() if name == "id" else value
    return record


def _raw_value(entity: Entity, name: str, value):
    kind = entity.scalars[name]
    if value is None:
        return None
    if kind == "T":
        moment = value if isinstance(value, (datetime, date)) else parse_stamp(str(value))
        return moment.date() if entity.is_date(name) and isinstance(moment, datetime) else moment
    if kind == "D":
        return value if isinstance(value, Decimal) else Decimal(str(value))
    return value


def _is_guid(value) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _label(name: str) -> str:
    words = {"AccountCD": "Account", "SubaccountCD": "Subaccount", "VendorID": "Vendor ID", "ClassID": "Class ID"}
    return words.get(name, "Inventory ID" if name == "InventoryID" else name)
