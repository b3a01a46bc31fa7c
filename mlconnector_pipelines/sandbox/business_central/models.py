"""Business Central's state and rules, apart from its HTTP answers (simulator.py).

Companies hold their entity sets as tables sorted by (lastModifiedDateTime, id); the model
assigns ids, stamps modifications, numbers new records from each company's number series,
refuses a key that exists and keeps each record's version for its etag, as BC does. The write
side follows the APIV2 pages' rules (Microsoft's AL sources and the v2.0 docs; the sources of
each rule are in docs/vendor-facts/bc-write-facts.md): sales orders and draft invoices with their lines
(deep insert is atomic), PATCH behind If-Match, posting a draft invoice and ship-and-invoice of
an order. A rule's refusal is an ApiError, carrying the status, code and message BC answers.

Every change to a record (created, updated, deleted; by the API, the admin endpoints or the live
mode) is told to the model's `listeners` as a `Change`: subscriptions.py turns them into webhook
notifications. A change to a document's line is a change of its header, as BC notifies it.
"""

from __future__ import annotations

import base64
import bisect
import calendar
import functools
import itertools
import json
import re
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources

from ..core.odata_filter import Comparison
from . import BusinessCentralSettings
from .seed import LINE_ENTITY, POST_CODES, CompanyData, generate_company, iso_ms, share_ids

LMD = "lastModifiedDateTime"
NULL_GUID = "00000000-0000-0000-0000-000000000000"
BLANK_DATE = "0001-01-01"  # BC writes an empty date as 0001-01-01 (the docs' create examples)
BLANK_ENUM = "_x0020_"  # the blank enum member " " as $schemaversion 2.0 writes it
CENT = Decimal("0.01")
# The sandbox's sales tax: one rate for a tax-liable customer's lines (the seed's documents carry
# 8 % too). Real US sales tax comes from tax areas and jurisdictions; the product only needs the
# totals to follow from the lines.
SALES_TAX_PERCENT = Decimal(8)
DOCUMENTS = {"salesOrders": "salesOrderLines", "salesInvoices": "salesInvoiceLines"}
LINE_PARENT = {lines: header for header, lines in DOCUMENTS.items()}
PATCHABLE = frozenset({"customers", "vendors", "items", "salesOrders", "salesInvoices"})
POSTED_STATUSES = frozenset({"Open", "Paid", "Canceled", "Corrective"})
RELEASED_STATUSES = frozenset({"Open", "Released"})  # an order's API status Open is BC's Released
# Number series per company (CRONUS USA's: S-ORD101001 in the docs' bound-action example,
# PS-INV103001 in the docs' sales invoice examples; S-INV102001 follows their pattern).
SERIES = {"salesOrders": ("S-ORD", 101001), "draftInvoices": ("S-INV", 102001), "postedInvoices": ("PS-INV", 103001)}
ENTITY_NAMES = {
    "customers": "customer",
    "vendors": "vendor",
    "items": "item",
    "salesOrders": "salesOrder",
    "salesOrderLines": "salesOrderLine",
    "salesInvoices": "salesInvoice",
    "salesInvoiceLines": "salesInvoiceLine",
}
# The paymentTerms entity (v2.0 resource docs, dynamics_paymentterm); not in shared/specs' file.
PAYMENT_TERM_FIELDS = {
    "id": "Edm.Guid",
    "code": "Edm.String",
    "displayName": "Edm.String",
    "dueDateCalculation": "Edm.String",
    "discountDateCalculation": "Edm.String",
    "discountPercent": "Edm.Decimal",
    "calculateDiscountOnCreditMemos": "Edm.Boolean",
    "lastModifiedDateTime": "Edm.DateTimeOffset",
}
# The currencies and companyInformation entities (v2.0 resource docs, dynamics_currency and
# dynamics_companyinformation, the fields the product reads); not in shared/specs' file.
CURRENCY_FIELDS = {
    "id": "Edm.Guid",
    "code": "Edm.String",
    "displayName": "Edm.String",
    "symbol": "Edm.String",
    "amountDecimalPlaces": "Edm.String",
    "amountRoundingPrecision": "Edm.Decimal",
    "lastModifiedDateTime": "Edm.DateTimeOffset",
}
COMPANY_INFORMATION_FIELDS = {
    "id": "Edm.Guid",
    "displayName": "Edm.String",
    "currencyCode": "Edm.String",
    "currentFiscalYearStartDate": "Edm.Date",
    "lastModifiedDateTime": "Edm.DateTimeOffset",
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ETAG = re.compile(r'^(W/)?"[^"]*"$')


class ApiError(Exception):
    """A refusal in BC's words: HTTP status, OData error code and message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class KeyExists(ApiError):
    """A record with the same identification fields exists (BC's Internal_EntityWithSameKeyExists)."""

    def __init__(self, message: str):
        super().__init__(400, "Internal_EntityWithSameKeyExists", message)


def dialog(message: str) -> ApiError:
    """An AL Error() in a page or codeunit: NavNCLDialogException → Application_DialogException."""
    return ApiError(400, "Application_DialogException", message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "BadRequest_NotFound", message)


def check_if_match(if_match: str | None, current_etag, required: bool) -> None:
    """BC's If-Match rule for any resource: missing (refused when `required`), `*`, or the etag `current_etag()`
    gives now (a malformed one is refused, a stale one is 409)."""
    if if_match is None or not if_match.strip():
        if required:
            raise INVALID_TOKEN
        return
    if_match = if_match.strip()
    if if_match == "*":
        return
    if not _ETAG.match(if_match):
        raise INVALID_TOKEN
    if if_match.removeprefix("W/") != current_etag().removeprefix("W/"):
        raise ENTITY_CHANGED


INVALID_TOKEN = ApiError(
    400,
    "BadRequest_InvalidToken",
    "Could not validate the client concurrency token required by the service. "
    "Please provide a valid token in the client request.",
)
ENTITY_CHANGED = ApiError(409, "Request_EntityChanged", "Another user has already changed the record.")
POSTED_INVOICE = dialog("The invoice has been posted and can no longer be modified.")
# DELETE of a posted invoice: the API deletes the Sales Invoice Header, whose OnDelete runs
# PostSales-Delete.IsDocumentDeletionAllowed: TestField("Allow Document Deletion Before") on the
# Sales & Receivables Setup, blank in a new company (docs/vendor-facts/bc-webhook-facts.md).
POSTED_INVOICE_DELETE = ApiError(
    400,
    "Application_FieldValidationException",
    "Allow Document Deletion Before must have a value in Sales & Receivables Setup: Primary Key=. "
    "It cannot be zero or empty.",
)
# The entity sets the API lets a client DELETE (drafts only among sales invoices).
# Fields of BC's Code data type: "converted to uppercase and removes any trailing or leading spaces"
# (Microsoft, Code Data Type). County, city and names are Text and keep their case.
CODE_FIELDS = {
    "customers": frozenset({"number", "postalCode", "country", "salespersonCode", "currencyCode"}),
    "vendors": frozenset({"number", "postalCode", "country", "currencyCode"}),
    "items": frozenset({"number", "baseUnitOfMeasureCode"}),
    "salesOrders": frozenset({"externalDocumentNumber", "customerNumber"}),
    "salesInvoices": frozenset({"externalDocumentNumber", "customerNumber"}),
    "salesOrderLines": frozenset({"lineObjectNumber"}),
    "salesInvoiceLines": frozenset({"lineObjectNumber"}),
}
DELETABLE = frozenset({"customers", "vendors", "items", "salesOrders", "salesInvoices"})


@dataclass(frozen=True)
class Change:
    """One record changed: what a webhook subscription to (company, entity set) is told about."""

    company_id: str
    entity_set: str
    record_id: str
    kind: str  # created | updated | deleted
    at: str  # the change's time (the record's lastModifiedDateTime; the deletion's time)


def _is_text(value) -> bool:
    return isinstance(value, str)


def _is_number(value) -> bool:
    return isinstance(value, (int, Decimal)) and not isinstance(value, bool)


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_date(value) -> bool:
    if not isinstance(value, str) or not _DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


# How a body's JSON value must look for each Edm type (numbers arrive as int or Decimal: bodies
# are parsed with parse_float=Decimal); null stands for the type's empty value where BC has one.
_CHECKS = {
    "Edm.Decimal": _is_number,
    "Edm.Int32": _is_integer,
    "Edm.Int64": _is_integer,
    "Edm.Boolean": lambda value: isinstance(value, bool),
    "Edm.Guid": lambda value: isinstance(value, str) and bool(_GUID.match(value)),
    "Edm.Date": _is_date,
}
_EMPTY = {"Edm.Guid": NULL_GUID, "Edm.Date": BLANK_DATE, "Edm.String": ""}


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
    # record or line id -> its version: bumped on every change, so two changes in one millisecond
    # (one lastModifiedDateTime) still give two etags
    versions: dict[str, int] = field(default_factory=dict)
    # number series -> the last number used, as BC's No. Series line keeps "Last No. Used"
    series: dict[str, int] = field(default_factory=dict)
    # documents created through the API (live mode ships and invoices those, and leaves them alone otherwise)
    created: set[str] = field(default_factory=set)

    @classmethod
    def from_data(cls, data: CompanyData) -> Company:
        return cls(data, {name: EntityTable(records) for name, records in data.entities.items()})

    def lines(self, line_set: str, document_id: str) -> list[dict]:
        """A document's lines (the seed keeps them under the header's entity set)."""
        return self.data.lines[LINE_PARENT[line_set]].setdefault(document_id, [])

    @property
    def local_currency(self) -> str:
        """General Ledger Setup's LCY Code (companyInformation's currencyCode)."""
        return self.tables["companyInformation"].records[0]["currencyCode"]

    def amount_precision(self, code: str | None) -> Decimal:
        """The interval a document's amounts in `code` are rounded to: the currency's Amount Rounding Precision;
        General Ledger Setup's (the cent) for the local currency."""
        for currency in self.tables["currencies"].records:
            if code and currency["code"] == code and dec(currency.get("amountRoundingPrecision")) > 0:
                return dec(currency["amountRoundingPrecision"])
        return CENT

    def next_number(self, series: str) -> tuple[str, int]:
        prefix, first = SERIES[series]
        number = self.series.get(series, first - 1) + 1
        return f"{prefix}{number}", number


@functools.cache
def _spec_entities() -> dict[str, dict]:
    spec = json.loads(
        resources.files(__package__).joinpath("specs/business-central-api-v2.0.entities.json").read_text()
    )
    return {e["entitySet"]: e for e in spec["entities"]}


def bc_field_types() -> dict[str, dict[str, str]]:
    """entity set -> field -> Edm type, from the packaged copy of shared/specs' BC spec."""
    return {name: {f["name"]: f["type"] for f in e["fields"]} for name, e in _spec_entities().items()}


def bc_read_only() -> dict[str, set[str]]:
    """entity set -> the fields the API computes (AL Editable=false), which a write does not set."""
    return {name: {f["name"] for f in e["fields"] if f.get("readOnly")} for name, e in _spec_entities().items()}


def bc_enum_values() -> dict[tuple[str, str], list[str]]:
    return {
        (name, f["name"]): f["enumValues"]
        for name, e in _spec_entities().items()
        for f in e["fields"]
        if f.get("enumValues")
    }


def seed_companies(settings: BusinessCentralSettings) -> dict[str, Company]:
    start, end = settings.history()
    generated = [
        generate_company(index, seed=settings.seed, start=start, end=end, volumes=settings.volumes)
        for index in range(settings.companies)
    ]
    if len(generated) > 1:
        share_ids(generated[0], generated[1])  # the second company began as a copy of the first
    return {data.id: Company.from_data(data) for data in generated}


def dec(value) -> Decimal:
    """An amount as Decimal: the seed holds some as float (by their shortest repr), bodies as Decimal."""
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value if value is not None else 0))


def money(value: Decimal, precision: Decimal = CENT) -> Decimal:
    """Rounded to a multiple of an amount rounding precision (the cent unless a currency says otherwise) as BC's
    Round(value, precision, '=') does: half away from zero."""
    return ((value / precision).quantize(Decimal(1), rounding=ROUND_HALF_UP) * precision).quantize(precision)


def tidy(value: Decimal) -> Decimal:
    """As few digits as the value needs (BC writes 16767.6, not 16767.60)."""
    return value.normalize() if value != 0 else Decimal(0)


def due_date(start: date, formula: str) -> date:
    """A payment terms' date formula (10D, 2W, 1M, CM, 0D) from `start`; anything else: `start`."""
    formula = formula.strip().upper()
    if formula == "CM":
        return start.replace(day=calendar.monthrange(start.year, start.month)[1])
    match = re.fullmatch(r"(\d+)([DWMY])", formula)
    if not match:
        return start
    count, unit = int(match.group(1)), match.group(2)
    if unit == "D":
        return start + timedelta(days=count)
    if unit == "W":
        return start + timedelta(weeks=count)
    months = count * (12 if unit == "Y" else 1) + start.month - 1
    year, month = start.year + months // 12, months % 12 + 1
    return start.replace(year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1]))


class BusinessCentralModel:
    """Every company's records; the rules a write must pass."""

    def __init__(self, settings: BusinessCentralSettings):
        self.settings = settings
        self.field_types = {
            **bc_field_types(),
            "paymentTerms": dict(PAYMENT_TERM_FIELDS),
            "currencies": dict(CURRENCY_FIELDS),
            "companyInformation": dict(COMPANY_INFORMATION_FIELDS),
        }
        self.read_only = bc_read_only()
        self.enum_values = bc_enum_values()
        self.companies = seed_companies(settings)
        self._version = itertools.count(1)  # one counter for the database, as SQL's rowversion is
        self.listeners: list[Callable[[Change], None]] = []  # told of every change (webhooks)
        self.clock_ahead = timedelta(0)  # how far BC's clock runs ahead of true time (dialect clock_ahead_seconds)

    def reset(self) -> None:
        self.companies = seed_companies(self.settings)

    def now_stamp(self) -> str:
        """BC's clock: what it stamps changes and their notices with."""
        return iso_ms(datetime.now(UTC) + self.clock_ahead)

    # -- records, versions, etags -----------------------------------------------------------------

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
        stamp = modified_at or self.now_stamp()
        existing = table.by_id.get(changes.get("id", ""))
        record = dict(existing) if existing else {name: None for name in self.field_types[entity_set]}
        record.update(changes)
        if not record.get("id"):  # a new record: the service assigns its id
            record["id"] = str(uuid.uuid4())
        record[LMD] = stamp
        table.upsert(record)
        self.touch(company, record["id"])
        if lines is not None and entity_set in LINE_ENTITY:
            company.data.lines[entity_set][record["id"]] = [dict(line, documentId=record["id"]) for line in lines]
        self._changed(company_id, entity_set, record["id"], "updated" if existing else "created", stamp)
        return record

    def delete(self, company_id: str, entity_set: str, record_id: str) -> dict:
        """Remove a record with its lines (no rules: BC's own user, the admin API, the live mode)."""
        company = self.companies[company_id]
        record = self.find(company, entity_set, record_id)
        self._remove(company, entity_set, record["id"])
        return record

    def delete_entity(self, company_id: str, entity_set: str, record_id: str, if_match: str | None) -> dict:
        """DELETE companies({id})/<set>({id}): the sets the API deletes; a posted invoice is refused.

        If-Match is checked when sent (a stale one: 409), as PATCH's token check but not required,
        as the platform treats DELETE (docs/vendor-facts/bc-write-facts.md, T1)."""
        company = self.companies[company_id]
        if entity_set not in DELETABLE:
            raise ApiError(
                405,
                "BadRequest_MethodNotAllowed",
                f"'DELETE' requests for '{entity_set}' of EdmType 'Entity' are not allowed within "
                "Microsoft Dynamics NAV OData web services.",
            )
        record = self.find(company, entity_set, record_id)
        self.check_if_match(company, record, if_match, required=False)
        if self._is_posted(entity_set, record):
            raise POSTED_INVOICE_DELETE
        self._remove(company, entity_set, record["id"])
        return record

    def _remove(self, company: Company, entity_set: str, record_id: str) -> None:
        company.tables[entity_set].delete(record_id)
        for line in company.data.lines.get(entity_set, {}).pop(record_id, None) or []:
            company.versions.pop(line["id"], None)
        company.versions.pop(record_id, None)
        self._changed(company.data.id, entity_set, record_id, "deleted", self.now_stamp())

    def _changed(self, company_id: str, entity_set: str, record_id: str, kind: str, at: str) -> None:
        change = Change(company_id, entity_set, record_id, kind, at)
        for listener in self.listeners:
            listener(change)

    def touch(self, company: Company, record_id: str) -> None:
        company.versions[record_id] = next(self._version)

    def etag(self, company: Company, record: dict) -> str:
        """Opaque to clients; changes with the record's version (and differs between records)."""
        version = company.versions.get(record["id"], 0)
        digits = "".join(ch for ch in record.get(LMD) or "" if ch.isdigit())
        token = f"{digits}{zlib.crc32(record['id'].encode()):010d}{version:010d}"
        return 'W/"' + base64.b64encode(f"'{len(token)};{token};00;'".encode()).decode() + '"'

    def check_if_match(self, company: Company, record: dict, if_match: str | None, required: bool) -> None:
        """PATCH needs If-Match (an etag or *); a bound action checks it only when sent."""
        check_if_match(if_match, lambda: self.etag(company, record), required)

    def find(self, company: Company, entity_set: str, record_id: str) -> dict:
        record = company.tables[entity_set].by_id.get(record_id.lower())
        if record is None:
            raise not_found(f"The {entity_set} record '{record_id}' does not exist.")
        return record

    def _save(self, company: Company, entity_set: str, record: dict) -> dict:
        existed = record["id"] in company.tables[entity_set].by_id
        record[LMD] = self.now_stamp()
        company.tables[entity_set].upsert(record)
        self.touch(company, record["id"])
        self._changed(company.data.id, entity_set, record["id"], "updated" if existed else "created", record[LMD])
        return record

    # -- bodies -------------------------------------------------------------------------------------

    def fields_of(self, entity_set: str, body: dict, keep: tuple[str, ...] = ()) -> dict:
        """The body's properties, typed as the entity declares them; computed ones are dropped.

        An unknown property is refused as BC's OData layer refuses it. Read-only properties a client
        echoes back (the docs' own create examples send customerName) are ignored, as BC recomputes
        them; `keep` names read-only ones this write does use (a supplied document number)."""
        types = self.field_types[entity_set]
        read_only = self.read_only.get(entity_set, set()) - set(keep)
        fields = {}
        for name, value in body.items():
            if name.startswith("@"):  # instance annotations a client echoes (@odata.etag)
                continue
            if name not in types:
                raise bad_request(
                    f"The property '{name}' does not exist on type 'Microsoft.NAV.{ENTITY_NAMES.get(entity_set, entity_set)}'."
                    " Make sure to only use property names that are defined by the type."
                )
            if name in read_only:
                continue
            fields[name] = self._typed(entity_set, name, types[name], value)
            if name in CODE_FIELDS.get(entity_set, ()) and isinstance(fields[name], str):
                fields[name] = fields[name].strip().upper()
        return fields

    def _typed(self, entity_set: str, name: str, edm: str, value):
        if value is None and edm in _EMPTY:
            return _EMPTY[edm]
        if edm.startswith("enum:"):
            members = [m.replace(" ", BLANK_ENUM) for m in self.enum_values.get((entity_set, name), [])]
            if isinstance(value, str) and value.replace(" ", BLANK_ENUM) in members:
                return value.replace(" ", BLANK_ENUM)
            raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Microsoft.NAV.{edm[5:]}'.")
        if not _CHECKS.get(edm, _is_text)(value):
            raise bad_request(f"Cannot convert the literal '{value}' to the expected type '{edm}'.")
        if edm == "Edm.Decimal":
            return Decimal(value)
        return value.lower() if edm == "Edm.Guid" else value

    # -- customers, vendors, items --------------------------------------------------------------------

    def create_customer(self, company_id: str, body: dict) -> dict:
        """A new customer, numbered from the series when no number is given; a number in use is refused."""
        company = self.companies[company_id]
        table = company.tables["customers"]
        fields = self.fields_of("customers", body)
        number = fields.get("number") or next_number([r.get("number") for r in table.records])
        if any(r.get("number") == number for r in table.records):
            raise KeyExists(
                f"The record in table Customer already exists. Identification fields and values: No.='{number}'"
            )
        if "paymentTermsId" in fields:
            self._payment_terms(company, fields["paymentTermsId"])
        fields["currencyCode"] = self._currency_code(company, fields.get("currencyCode"), "Customer")  # blank: LCY
        fields |= from_post_code(fields, fields)
        customer = self.upsert(company_id, "customers", {**fields, "id": "", "number": number})
        company.created.add(customer["id"])  # the live mode leaves a client's customer alone
        return customer

    def patch_entity(self, company_id: str, entity_set: str, record_id: str, body: dict, if_match: str | None):
        """PATCH customers/vendors/items: If-Match, then the sent properties; a new number must be free."""
        company = self.companies[company_id]
        if entity_set in DOCUMENTS:
            return self.patch_document(company_id, entity_set, record_id, body, if_match)
        if entity_set not in PATCHABLE:
            raise ApiError(
                405,
                "BadRequest_MethodNotAllowed",
                f"'PATCH' requests for '{entity_set}' of EdmType 'Entity' are not allowed within "
                "Microsoft Dynamics NAV OData web services.",
            )
        record = self.find(company, entity_set, record_id)
        self.check_if_match(company, record, if_match, required=True)
        fields = self.fields_of(entity_set, body)
        number = fields.get("number")
        if number is not None and number != record.get("number"):
            table_name = {"customers": "Customer", "vendors": "Vendor", "items": "Item"}[entity_set]
            if any(r.get("number") == number for r in company.tables[entity_set].records):
                raise KeyExists(
                    f"The record in table {table_name} already exists. Identification fields and values: No.='{number}'"
                )
        if "paymentTermsId" in fields:
            self._payment_terms(company, fields["paymentTermsId"])
        if entity_set == "customers":
            fields |= from_post_code(fields, {**record, **fields})
        return self._save(company, entity_set, {**record, **fields})

    def _currency_code(self, company: Company, code: str | None, table: str) -> str:
        """A currencyCode as the API pages keep it: blank or the LCY Code is the local currency (answered as the
        LCY Code); any other code must be one of the company's currencies."""
        if not code or code == company.local_currency:
            return company.local_currency
        if not any(c["code"] == code for c in company.tables["currencies"].records):
            raise dialog(
                f"The field Currency Code of table {table} contains a value ({code}) that cannot be found in the "
                "related table (Currency)."
            )
        return code

    def _payment_terms(self, company: Company, terms_id: str | None) -> dict | None:
        if not terms_id or terms_id == NULL_GUID:
            return None
        terms = company.tables["paymentTerms"].by_id.get(terms_id)
        if terms is None:
            raise dialog('The "paymentTermsId" does not match to a Payment Terms.')
        return terms

    # -- sales documents ----------------------------------------------------------------------------

    def _customer(self, company: Company, customer_id, number, who: str = "sell-to") -> dict | None:
        """customerId, then customerNumber, as the page validates them (the number must agree)."""
        table = company.tables["customers"]
        found = None
        if customer_id is not None:
            found = table.by_id.get(customer_id)
            if found is None:
                raise dialog(f"The {who} customer cannot be found.")
        if number is not None:
            if found is not None:
                if found["number"] != number:
                    raise dialog(f"The {who} customer values do not match to a specific Customer.")
            else:
                found = next((c for c in table.records if c["number"] == number), None)
                if found is None:
                    raise dialog(f"The {who} customer cannot be found.")
        return found

    @staticmethod
    def _check_blocked(customer: dict, action: str) -> None:
        """Customer.Blocked: All refuses any document; Invoice (or All) refuses posting."""
        blocked = customer.get("blocked")
        if blocked == "All" or (action == "post" and blocked == "Invoice"):
            raise dialog(
                f"You cannot {action} this type of document when Customer {customer['number']} is blocked with type "
                f"{blocked}"
            )

    def _is_posted(self, entity_set: str, header: dict) -> bool:
        return entity_set == "salesInvoices" and header.get("status") in POSTED_STATUSES

    def create_document(self, company_id: str, entity_set: str, body: dict) -> tuple[dict, list[dict]]:
        """POST salesOrders / salesInvoices, with its lines when the body holds them (deep insert).

        Everything is checked before anything is stored, so a refused line leaves no header behind:
        deep insert is one transaction."""
        company = self.companies[company_id]
        line_set = DOCUMENTS[entity_set]
        body = dict(body)
        line_bodies = body.pop(line_set, None)
        if line_bodies is not None and not isinstance(line_bodies, list):
            raise bad_request(f"The value of '{line_set}' must be an array of {ENTITY_NAMES[line_set]} objects.")
        fields = self.fields_of(entity_set, body, keep=("number",))
        header = self._new_header(company, entity_set, fields)
        lines: list[dict] = []
        for line_body in line_bodies or []:
            if not isinstance(line_body, dict):
                raise bad_request("Invalid Request Body")
            lines.append(self._new_line(company, line_set, header, lines, line_body))
        self._totals(entity_set, header, lines)
        # commit: the header, its lines, the number series
        series = "salesOrders" if entity_set == "salesOrders" else "draftInvoices"
        if not fields.get("number"):  # a number the client chose leaves the series where it was
            company.series[series] = company.next_number(series)[1]
        company.data.lines[entity_set][header["id"]] = lines
        for line in lines:
            self.touch(company, line["id"])
        company.created.add(header["id"])
        return self._save(company, entity_set, header), lines

    def _new_header(self, company: Company, entity_set: str, fields: dict) -> dict:
        customer = self._customer(company, fields.get("customerId"), fields.get("customerNumber"))
        bill_to = None
        if "billToCustomerId" in fields or "billToCustomerNumber" in fields:
            bill_to = self._customer(
                company, fields.get("billToCustomerId"), fields.get("billToCustomerNumber"), who="bill-to"
            )
        if customer is None:
            raise dialog('A "customerNumber" or a "customerId" must be provided.')
        self._check_blocked(customer, "create")
        terms_id = fields.get("paymentTermsId", customer.get("paymentTermsId"))
        terms = self._payment_terms(company, terms_id)
        series = "salesOrders" if entity_set == "salesOrders" else "draftInvoices"
        number = fields.get("number") or company.next_number(series)[0]
        self._check_free_number(company, entity_set, number)
        today = datetime.now(UTC).date().isoformat()
        header = {name: None for name in self.field_types[entity_set]}
        header.update(self._customer_fields(customer, bill_to or customer))
        header.update(
            {
                "id": str(uuid.uuid4()),
                "number": number,
                "externalDocumentNumber": "",
                "postingDate": today,
                "shipToContact": "",
                "shortcutDimension1Code": "",
                "shortcutDimension2Code": "",
                "currencyId": NULL_GUID,
                "currencyCode": customer.get("currencyCode") or "",
                "paymentTermsId": terms["id"] if terms else NULL_GUID,
                "shipmentMethodId": customer.get("shipmentMethodId") or NULL_GUID,
                "salesperson": customer.get("salespersonCode") or "",
                "pricesIncludeTax": False,
                "discountAmount": Decimal(0),
                "discountAppliedBeforeTax": False,
                "status": "Draft",
            }
        )
        if entity_set == "salesOrders":
            header.update(
                {
                    "orderDate": today,
                    "partialShipping": True,
                    "requestedDeliveryDate": BLANK_DATE,
                    "fullyShipped": False,
                }
            )
        else:
            header.update(
                {
                    "invoiceDate": today,
                    "promisedPayDate": BLANK_DATE,
                    "customerPurchaseOrderReference": "",
                    "orderId": NULL_GUID,
                    "orderNumber": "",
                    "disputeStatusId": NULL_GUID,
                    "disputeStatus": "",
                }
            )
        header.update({k: v for k, v in fields.items() if k not in ("customerId", "customerNumber", "number")})
        header["currencyCode"] = self._currency_code(company, header["currencyCode"], "Sales Header")
        if entity_set == "salesInvoices" and "dueDate" not in fields:
            header["dueDate"] = self._due(header["invoiceDate"], terms)
        return header

    def _customer_fields(self, customer: dict, bill_to: dict) -> dict:
        """What validating Sell-to (and Bill-to) Customer No. copies onto a sales header."""
        fields = {
            "customerId": customer["id"],
            "customerNumber": customer["number"],
            "customerName": customer["displayName"],
            "billToName": bill_to["displayName"],
            "billToCustomerId": bill_to["id"],
            "billToCustomerNumber": bill_to["number"],
            "shipToName": customer["displayName"],
            "phoneNumber": customer.get("phoneNumber") or "",
            "email": customer.get("email") or "",
        }
        address = {
            "AddressLine1": "addressLine1",
            "AddressLine2": "addressLine2",
            "City": "city",
            "Country": "country",
            "State": "state",
            "PostCode": "postalCode",
        }
        for suffix, source in address.items():
            fields[f"sellTo{suffix}"] = customer.get(source) or ""
            fields[f"shipTo{suffix}"] = customer.get(source) or ""
            fields[f"billTo{suffix}"] = bill_to.get(source) or ""
        return fields

    @staticmethod
    def _due(invoice_date: str, terms: dict | None) -> str:
        start = date.fromisoformat(invoice_date)
        return due_date(start, terms["dueDateCalculation"] if terms else "0D").isoformat()

    def _check_free_number(self, company: Company, entity_set: str, number: str) -> None:
        """Sales Header's key is (Document Type, No.): a draft's or an order's number must be unused."""
        for record in company.tables[entity_set].records:
            if record.get("number") == number and not self._is_posted(entity_set, record):
                kind = "Order" if entity_set == "salesOrders" else "Invoice"
                raise KeyExists(
                    "The record in table Sales Header already exists. Identification fields and values: "
                    f"Document Type='{kind}',No.='{number}'"
                )

    def _new_line(self, company: Company, line_set: str, header: dict, siblings: list[dict], body: dict) -> dict:
        """One line as the APIV2 line page validates it: the item (or account), then the amounts."""
        fields = self.fields_of(line_set, body)
        if fields.get("documentId", header["id"]) != header["id"]:
            raise dialog('The value for "documentId" cannot be modified.')
        line = {name: None for name in self.field_types[line_set]}
        line.update(
            {
                "id": str(uuid.uuid4()),
                "documentId": header["id"],
                "itemId": NULL_GUID,
                "accountId": NULL_GUID,
                "lineObjectNumber": "",
                "description": "",
                "description2": "",
                "unitOfMeasureId": NULL_GUID,
                "unitOfMeasureCode": "",
                "quantity": Decimal(0),
                "unitPrice": Decimal(0),
                "discountAmount": Decimal(0),
                "discountPercent": Decimal(0),
                "discountAppliedBeforeTax": False,
                "taxCode": "",
                "shipmentDate": header.get("orderDate") or header.get("invoiceDate"),
                "itemVariantId": NULL_GUID,
                "locationId": NULL_GUID,
            }
        )
        sequence = fields.pop("sequence", None)
        used = {s["sequence"] for s in siblings}
        if sequence is None:
            sequence = max(used, default=0) + 10000
        elif sequence in used:
            raise dialog("You cannot insert a line because a line already exists.")
        line["sequence"] = sequence
        self._set_object(company, header, line, fields)
        for name in ("description", "description2", "unitOfMeasureCode", "taxCode", "shipmentDate"):
            if name in fields:
                line[name] = fields[name]
        for name in ("unitOfMeasureId", "itemVariantId", "locationId"):
            if name in fields:
                line[name] = fields[name]
        self._amounts(company, header, line, fields)
        return line

    def _set_object(self, company: Company, header: dict, line: dict, fields: dict) -> None:
        """lineType with itemId / accountId / lineObjectNumber; the AL page's checks and their words."""
        item_id = fields.get("itemId", NULL_GUID)
        account_id = fields.get("accountId", NULL_GUID)
        number = fields.get("lineObjectNumber")
        if item_id != NULL_GUID and account_id != NULL_GUID:
            raise dialog('Both "itemId" and "accountId" are specified. Specify only one of them.')
        line_type = fields.get("lineType")
        if line_type is None:
            line_type = "Item" if item_id != NULL_GUID else "Account" if account_id != NULL_GUID else "Comment"
        line["lineType"] = line_type
        if line_type == "Item":
            item = self._line_object(company, "items", number, item_id, "Item does not exist.")
            if item is not None:
                line.update(
                    {
                        "itemId": item["id"],
                        "lineObjectNumber": item["number"],
                        "description": item["displayName"],
                        "unitOfMeasureId": item.get("baseUnitOfMeasureId") or NULL_GUID,
                        "unitOfMeasureCode": item.get("baseUnitOfMeasureCode") or "",
                        "unitPrice": dec(item.get("unitPrice")),
                        "taxCode": item.get("taxGroupCode") or "",
                    }
                )
        elif line_type == "Account":
            account = self._line_object(company, "accounts", number, account_id, "Account does not exist.")
            if account is not None:
                line.update(
                    {
                        "accountId": account["id"],
                        "lineObjectNumber": account["number"],
                        "description": account["displayName"],
                    }
                )
        elif line_type != "Comment":
            raise bad_request(f"The sandbox does not simulate sales lines of lineType '{line_type}'.")
        elif number:  # Sales Line "No." of a comment line is a Standard Text code
            raise ApiError(
                400,
                "Internal_RecordNotFound",
                f"The Standard Text does not exist. Identification fields and values: Code='{number}'",
            )
        if line_type != "Comment" and line["lineObjectNumber"] == "" and fields.get("quantity"):
            raise ApiError(
                400,
                "Application_FieldValidationException",
                f"No. must have a value in Sales Line: Document Type={self._kind(header)}, "
                f"Document No.={header['number']}, Line No.={line['sequence']}. It cannot be zero or empty.",
            )

    @staticmethod
    def _line_object(company: Company, entity_set: str, number: str | None, object_id: str, missing: str):
        """The item (or G/L account) a line names by number (which wins, as it is validated last) or id."""
        if number:
            found = next((r for r in company.tables[entity_set].records if r["number"] == number), None)
        elif object_id != NULL_GUID:
            found = company.tables[entity_set].by_id.get(object_id)
        else:
            return None
        if found is None:
            raise dialog(missing)
        return found

    @staticmethod
    def _kind(header: dict) -> str:
        return "Order" if "orderDate" in header else "Invoice"

    def _amounts(self, company: Company, header: dict, line: dict, fields: dict) -> None:
        """Line amount = round(quantity × unit price) − line discount, each rounded to the document currency's
        amount rounding precision (a yen document's to the yen); tax at the customer's rate."""
        for name in ("quantity", "unitPrice", "discountPercent", "discountAmount"):
            if name in fields:
                line[name] = fields[name]
        unit = company.amount_precision(header.get("currencyCode"))
        quantity, price = dec(line["quantity"]), dec(line["unitPrice"])
        gross = money(quantity * price, unit)
        if "discountAmount" in fields and "discountPercent" not in fields:
            discount = money(dec(line["discountAmount"]), unit)
            percent = (discount / gross * 100).quantize(Decimal("0.00001")) if gross else Decimal(0)
        else:
            percent = dec(line["discountPercent"])
            discount = money(gross * percent / 100, unit)
        net = gross - discount
        customer = company.tables["customers"].by_id.get(header.get("customerId") or "")
        taxed = line["lineType"] in ("Item", "Account") and bool(customer and customer.get("taxLiable"))
        rate = SALES_TAX_PERCENT if taxed else Decimal(0)
        tax = money(net * rate / 100, unit)
        line.update(
            {
                "quantity": tidy(quantity),
                "unitPrice": tidy(price),
                "discountAmount": tidy(discount),
                "discountPercent": tidy(percent),
                "amountExcludingTax": tidy(net),
                "taxPercent": tidy(rate),
                "totalTaxAmount": tidy(tax),
                "amountIncludingTax": tidy(net + tax),
                "invoiceDiscountAllocation": Decimal(0),
                "netAmount": tidy(net),
                "netTaxAmount": tidy(tax),
                "netAmountIncludingTax": tidy(net + tax),
            }
        )
        if "shippedQuantity" in line:  # an order line: what is still to ship and invoice is all of it
            shipped = dec(line.get("shippedQuantity"))
            invoiced = dec(line.get("invoicedQuantity"))
            line.update(
                {
                    "shippedQuantity": tidy(shipped),
                    "invoicedQuantity": tidy(invoiced),
                    "shipQuantity": tidy(quantity - shipped),
                    "invoiceQuantity": tidy(quantity - invoiced),
                }
            )

    def _totals(self, entity_set: str, header: dict, lines: list[dict], reallocate: bool = False) -> bool:
        """Header totals from the lines; a header discount (discountAmount) is spread over the lines.

        Returns whether the lines' net amounts were rewritten (their etags must then change too)."""
        discount = money(dec(header.get("discountAmount")))
        spread = bool(discount or reallocate)
        if spread:
            base = sum((dec(line.get("amountExcludingTax")) for line in lines), Decimal(0))
            left = discount
            priced = [line for line in lines if dec(line.get("amountExcludingTax"))]
            for index, line in enumerate(priced):
                amount = dec(line["amountExcludingTax"])
                share = left if index == len(priced) - 1 else money(discount * amount / base) if base else Decimal(0)
                left -= share
                net = amount - share
                tax = money(net * dec(line.get("taxPercent")) / 100)
                line.update(
                    {
                        "invoiceDiscountAllocation": tidy(share),
                        "netAmount": tidy(net),
                        "netTaxAmount": tidy(tax),
                        "netAmountIncludingTax": tidy(net + tax),
                    }
                )
        net = sum((dec(line.get("netAmount")) for line in lines), Decimal(0))
        tax = sum((dec(line.get("netTaxAmount")) for line in lines), Decimal(0))
        header.update(
            {
                "discountAmount": tidy(discount),
                # the aggregator sets it from the lines: with prices excluding tax, the invoice
                # discount comes off before tax (the docs' examples: false without lines, true with)
                "discountAppliedBeforeTax": bool(lines) and not header.get("pricesIncludeTax"),
                "totalAmountExcludingTax": tidy(net),
                "totalTaxAmount": tidy(tax),
                "totalAmountIncludingTax": tidy(net + tax),
            }
        )
        if entity_set == "salesInvoices":
            header["remainingAmount"] = tidy(net + tax)
        return spread

    def _line_parent(self, company: Company, line_set: str, document_id: str, for_change: bool = True) -> dict:
        entity_set = LINE_PARENT[line_set]
        header = company.tables[entity_set].by_id.get((document_id or "").lower())
        if header is None:
            raise dialog("No document with the specified ID exists.")
        if for_change and self._is_posted(entity_set, header):
            raise POSTED_INVOICE
        if for_change and entity_set == "salesOrders" and header.get("status") in RELEASED_STATUSES:
            raise ApiError(
                400,
                "Application_FieldValidationException",
                f"Status must be equal to 'Open'  in Sales Header: Document Type=Order, No.={header['number']}. "
                f"Current value is 'Released'.",
            )
        return header

    def create_line(self, company_id: str, line_set: str, document_id: str | None, body: dict) -> dict:
        """POST salesOrders({id})/salesOrderLines (or companies({id})/salesOrderLines with documentId)."""
        company = self.companies[company_id]
        if document_id is None:
            document_id = body.get("documentId")
            if not document_id:
                raise dialog("You must specify a document id to get the lines.")
        header = self._line_parent(company, line_set, document_id)
        entity_set = LINE_PARENT[line_set]
        lines = company.lines(line_set, header["id"])
        line = self._new_line(company, line_set, header, lines, body)
        header = dict(header)
        lines.append(line)
        lines.sort(key=lambda x: x["sequence"])
        spread = self._totals(entity_set, header, lines)
        for touched in lines if spread else [line]:
            self.touch(company, touched["id"])
        self._save(company, entity_set, header)
        return line

    def find_line(self, company: Company, line_set: str, line_id: str, document_id: str | None = None):
        documents = company.data.lines[LINE_PARENT[line_set]]
        candidates = [document_id.lower()] if document_id else list(documents)
        for doc in candidates:
            for line in documents.get(doc, []):
                if line["id"] == line_id.lower():
                    return doc, line
        raise not_found(f"The {line_set} record '{line_id}' does not exist.")

    def patch_line(
        self, company_id: str, line_set: str, document_id: str | None, line_id: str, body: dict, if_match: str | None
    ) -> dict:
        company = self.companies[company_id]
        document_id, line = self.find_line(company, line_set, line_id, document_id)
        self.check_if_match(company, line, if_match, required=True)
        header = dict(self._line_parent(company, line_set, document_id))
        fields = self.fields_of(line_set, body)
        if "sequence" in fields and fields["sequence"] != line["sequence"]:
            raise dialog("The value for sequence cannot be modified. Delete and insert the line again.")
        if "documentId" in fields and fields["documentId"] != line["documentId"]:
            raise dialog('The value for "documentId" cannot be modified.')
        if "lineObjectNumber" in fields and fields["lineObjectNumber"] != line["lineObjectNumber"]:
            if line["lineObjectNumber"]:
                raise dialog('The value for "lineObjectNumber" cannot be modified.')
        changed = dict(line)
        if any(name in fields for name in ("itemId", "accountId", "lineType", "lineObjectNumber")):
            merged = {
                "lineType": fields.get("lineType", line["lineType"]),
                "itemId": fields.get("itemId", NULL_GUID),
                "accountId": fields.get("accountId", NULL_GUID),
            }
            if "lineObjectNumber" in fields:
                merged["lineObjectNumber"] = fields["lineObjectNumber"]
            self._set_object(company, header, changed, {**merged, "quantity": fields.get("quantity", line["quantity"])})
            if (
                "unitPrice" not in fields
                and changed["lineType"] == line["lineType"]
                and changed["itemId"] == line["itemId"]
            ):
                changed["unitPrice"] = line["unitPrice"]
        for name in ("description", "description2", "unitOfMeasureCode", "unitOfMeasureId", "taxCode", "shipmentDate"):
            if name in fields:
                changed[name] = fields[name]
        for name in ("itemVariantId", "locationId"):
            if name in fields:
                changed[name] = fields[name]
        self._amounts(company, header, changed, fields)
        lines = company.lines(line_set, document_id)
        lines[:] = [changed if x["id"] == line["id"] else x for x in lines]
        spread = self._totals(LINE_PARENT[line_set], header, lines)
        for touched in lines if spread else [changed]:
            self.touch(company, touched["id"])
        self._save(company, LINE_PARENT[line_set], header)
        return changed

    def patch_document(self, company_id: str, entity_set: str, record_id: str, body: dict, if_match: str | None):
        """PATCH a sales order or a draft invoice: If-Match; a posted invoice is read-only."""
        company = self.companies[company_id]
        record = self.find(company, entity_set, record_id)
        self.check_if_match(company, record, if_match, required=True)
        if self._is_posted(entity_set, record):
            raise POSTED_INVOICE
        line_set = DOCUMENTS[entity_set]
        if line_set in body:
            raise bad_request(f"A PATCH cannot change the navigation property '{line_set}'; write its lines instead.")
        fields = self.fields_of(entity_set, body)
        header = dict(record)
        lines = company.lines(line_set, header["id"])
        if entity_set == "salesOrders" and fields.get("pricesIncludeTax") and lines:
            # CRONUS USA calculates sales tax, which the page's OnValidate refuses prices including
            raise dialog('The "pricesIncludeTax" cannot be set to true if VAT Calculation Type is Sales Tax.')
        if any(k in fields for k in ("customerId", "customerNumber")):
            customer = self._customer(company, fields.get("customerId"), fields.get("customerNumber"))
            if customer is not None and customer["id"] != record.get("customerId"):
                self._check_blocked(customer, "create")
                header.update(self._customer_fields(customer, customer))
                terms = self._payment_terms(company, customer.get("paymentTermsId"))
                header["paymentTermsId"] = terms["id"] if terms else NULL_GUID
        if "billToCustomerId" in fields or "billToCustomerNumber" in fields:
            bill_to = self._customer(
                company, fields.get("billToCustomerId"), fields.get("billToCustomerNumber"), who="bill-to"
            )
            if bill_to is not None:
                billing = self._customer_fields(bill_to, bill_to)
                header.update({k: v for k, v in billing.items() if k.startswith("billTo")})
        terms = self._payment_terms(company, fields.get("paymentTermsId", header.get("paymentTermsId")))
        header.update({k: v for k, v in fields.items() if k not in ("customerId", "customerNumber")})
        if "currencyCode" in fields:
            header["currencyCode"] = self._currency_code(company, fields["currencyCode"], "Sales Header")
        if entity_set == "salesInvoices" and "dueDate" not in fields:
            if any(k in fields for k in ("invoiceDate", "paymentTermsId", "customerId", "customerNumber")):
                header["dueDate"] = self._due(header["invoiceDate"], terms)
        if self._totals(entity_set, header, lines, reallocate="discountAmount" in fields):
            for line in lines:
                self.touch(company, line["id"])
        return self._save(company, entity_set, header)

    # -- bound actions -------------------------------------------------------------------------------

    def _check_can_post(self, company: Company, header: dict, lines: list[dict], kind: str) -> None:
        if not lines:
            # APIV2 - Send Sales Document: the invoice's message, and the quote's for any other type
            raise dialog(f"Please add at least one line item to the {'invoice' if kind == 'Invoice' else 'estimate'}.")
        if any(line.get("lineObjectNumber") and not dec(line.get("quantity")) for line in lines):
            raise dialog("One or more document lines with a value in the No. field do not have a quantity specified.")
        customer = company.tables["customers"].by_id.get(header.get("customerId") or "")
        if customer is not None:
            self._check_blocked(customer, "post")

    def post_invoice(self, company_id: str, invoice_id: str, if_match: str | None) -> dict:
        """Microsoft.NAV.post: the draft becomes the posted invoice, keeping its id, with the posted number."""
        company = self.companies[company_id]
        draft = self.find(company, "salesInvoices", invoice_id)
        self.check_if_match(company, draft, if_match, required=False)
        if self._is_posted("salesInvoices", draft):
            raise dialog("The action can be applied to a draft invoice only.")
        lines = company.lines("salesInvoiceLines", draft["id"])
        self._check_can_post(company, draft, lines, "Invoice")
        number, used = company.next_number("postedInvoices")
        posted = {**draft, "number": number, "status": "Open", "remainingAmount": draft.get("totalAmountIncludingTax")}
        # posted lines are Sales Invoice Lines: new SystemIds under the same document id
        posted_lines = [{**line, "id": str(uuid.uuid4())} for line in lines]
        company.series["postedInvoices"] = used
        company.data.lines["salesInvoices"][draft["id"]] = posted_lines
        for line in posted_lines:
            self.touch(company, line["id"])
        return self._save(company, "salesInvoices", posted)

    def ship_and_invoice(self, company_id: str, order_id: str, if_match: str | None) -> dict:
        """Microsoft.NAV.shipAndInvoice: posts the whole order; the fully invoiced order is deleted.

        The posted invoice is a new salesInvoices record (its own id) carrying the order's number and
        id, external document number, customer, lines and amounts."""
        company = self.companies[company_id]
        order = self.find(company, "salesOrders", order_id)
        self.check_if_match(company, order, if_match, required=False)
        order_lines = company.lines("salesOrderLines", order["id"])
        self._check_can_post(company, order, order_lines, "Order")
        number, used = company.next_number("postedInvoices")
        invoice_fields = self.field_types["salesInvoices"]
        invoice = {name: order.get(name) for name in invoice_fields}
        invoice_date = order.get("orderDate") or datetime.now(UTC).date().isoformat()
        terms = self._payment_terms(company, order.get("paymentTermsId"))
        invoice.update(
            {
                "id": str(uuid.uuid4()),
                "number": number,
                "invoiceDate": invoice_date,
                "postingDate": order.get("postingDate") or invoice_date,
                "dueDate": self._due(invoice_date, terms),
                "promisedPayDate": BLANK_DATE,
                "customerPurchaseOrderReference": "",
                "orderId": order["id"],
                "orderNumber": order["number"],
                "disputeStatusId": NULL_GUID,
                "disputeStatus": "",
                "remainingAmount": order.get("totalAmountIncludingTax"),
                "status": "Open",
            }
        )
        line_fields = self.field_types["salesInvoiceLines"]
        invoice_lines = [
            {**{name: line.get(name) for name in line_fields}, "id": str(uuid.uuid4()), "documentId": invoice["id"]}
            for line in order_lines
        ]
        company.series["postedInvoices"] = used
        company.data.lines["salesInvoices"][invoice["id"]] = invoice_lines
        for line in invoice_lines:
            self.touch(company, line["id"])
        self._remove(company, "salesOrders", order["id"])
        if order["id"] in company.created:
            company.created.add(invoice["id"])
        return self._save(company, "salesInvoices", invoice)


def from_post_code(sent: dict, customer: dict) -> dict:
    """What Customer."Post Code"'s OnValidate (Post Code table, ValidatePostCode) overwrites when a post code is
    sent: a code in the Post Code table gives the customer that entry's city, county (`state`) and country, the
    customer's own country's entry first (the table's key order, Code then City, among several). The APIV2
    customers page validates postalCode after city, state and country, so the table's values are what BC saves,
    whatever was sent with it. A city sent alone is kept as sent (ValidateCity exits in a session without a UI)."""
    code = sent.get("postalCode")
    entries = sorted(entry for entry in POST_CODES if entry[0] == code) if code else []
    if not entries:
        return {}
    _, city, county, country = next((e for e in entries if e[3] == customer.get("country")), entries[0])
    return {"city": city, "state": county, "country": country}


def next_number(numbers: list) -> str:
    """The customer number series: the highest numeric No. plus 10, as BC's default series steps."""
    numeric = [int(n) for n in numbers if isinstance(n, str) and n.isdigit()]
    return str(max(numeric, default=10000) + 10)
