"""The organization's data and its rules, apart from HTTP: rows, row versions, tombstones and events.

Every create, update and delete takes the next number of one organization-wide counter (the row's
`versionnumber`, its ETag and change tracking's cursor); a delete leaves a tombstone with its
version. Rows are never changed in place: a write stores a new dict, so a page being rendered
never sees half a write. Each write tells the listeners (the webhook sender) what happened as an
Event carrying the SDK message name and its parameters.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from . import DataverseSettings, seed
from .errors import DataverseError, bad_argument, invalid_state, invalid_state_status, not_found
from .events import Entity, EntityReference, Event, Money, OptionSetValue
from .pricing import decimal, header_totals, line_amounts, money
from .rules import EDITABLE_STATES, LINE_PARENTS, check_transition
from .tables import BY_LOGICAL, REFERENCE_SETS, SALES_TABLES, SDK_TABLES, TABLES, Table

FIRST_VERSION = 1_000_000
CATALOGUE_MESSAGES = ("Create", "Update", "Delete", "SetState", "SetStateDynamicEntity")
SPECIAL_MESSAGES = {"Win": ("opportunity", "quote"), "Lose": ("opportunity",), "ConvertQuoteToSalesOrder": ("quote",)}
REGISTRATION = frozenset(t.logical for t in SDK_TABLES)
NUMBERED = {
    "quotes": ("quotenumber", "QUO"),
    "salesorders": ("ordernumber", "ORD"),
    "invoices": ("invoicenumber", "INV"),
}


def stamp(moment: datetime) -> str:
    """Dataverse's DateTimeOffset: UTC, whole seconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Tombstone:
    version: int
    id: str


class DataverseModel:
    def __init__(self, settings: DataverseSettings, now: Callable[[], datetime] | None = None):
        self.settings = settings
        self.now = now or (lambda: datetime.now(UTC).replace(microsecond=0))
        self.listeners: list[Callable[[Event], None]] = []
        self.reset()

    # -- the seed ----------------------------------------------------------------------------------------

    def reset(self) -> None:
        data = seed.build(self.settings)
        self.reference = data.reference
        self.live_account = data.live_account
        self.live_account_edited = False
        self.rng = random.Random(self.settings.seed + 1)
        self.tables: dict[str, dict[str, dict]] = {name: {} for name in TABLES}
        self.tombstones: dict[str, list[Tombstone]] = {name: [] for name in TABLES}
        self.version = FIRST_VERSION
        self.closes: list[dict] = []  # opportunityclose / quoteclose activities the actions wrote
        self.expired_through = 0  # delta tokens of this row version or older are expired
        staged = [(row["modifiedon"], name, row) for name, rows in data.rows.items() for row in rows]
        staged += self._catalogue(self.settings.history()[0])
        for _, name, row in sorted(staged, key=lambda item: item[0]):
            self._store(name, self._normalized(TABLES[name], row))
        self.numbers = {name: len(self.tables[name]) + 1000 for name in NUMBERED}

    def _catalogue(self, at: datetime) -> list[tuple]:
        """The sdkmessage and sdkmessagefilter rows a step registration binds to."""
        rng = random.Random(self.settings.seed + 2)
        staged = []
        sales = [t.logical for t in SALES_TABLES]
        for message in (*CATALOGUE_MESSAGES, *SPECIAL_MESSAGES):
            message_id = seed.guid(rng)
            staged.append((at, "sdkmessages", {"sdkmessageid": message_id, "name": message, "modifiedon": at}))
            for logical in SPECIAL_MESSAGES.get(message, sales):
                row = {"sdkmessagefilterid": seed.guid(rng), "primaryobjecttypecode": logical, "modifiedon": at}
                row |= {"secondaryobjecttypecode": "none", "_sdkmessageid_value": message_id}
                row["@lookup"] = {"sdkmessageid": "sdkmessage"}
                staged.append((at, "sdkmessagefilters", row))
        return staged

    @staticmethod
    def _normalized(table: Table, row: dict) -> dict:
        unknown = set(row) - set(table.types) - {lk.property for lk in table.lookup.values()} - {"@lookup"}
        if unknown:
            raise ValueError(f"{table.entity_set}: the seed sets columns the table does not have: {sorted(unknown)}")
        out = {name: row.get(name) for name in table.types}
        for name, edm in table.types.items():
            if edm == "Edm.DateTimeOffset" and isinstance(out[name], datetime):
                out[name] = stamp(out[name])
        out["createdon"] = out.get("createdon") or out.get("modifiedon")
        targets = dict(row.get("@lookup", {}))
        for lookup in table.lookup.values():
            out[lookup.property] = row.get(lookup.property)
            targets.setdefault(lookup.attribute, None)
        out["@lookup"] = {attr: (target if out[f"_{attr}_value"] else None) for attr, target in targets.items()}
        return out

    def _store(self, entity_set: str, row: dict) -> dict:
        self.version += 1
        row["versionnumber"] = self.version
        self.tables[entity_set][row[TABLES[entity_set].key]] = row
        return row

    # -- reading -----------------------------------------------------------------------------------------

    def get(self, entity_set: str, key: str) -> dict:
        row = self.tables[entity_set].get(key.lower())
        if row is None:
            raise not_found(TABLES[entity_set].logical, key)
        return row

    def find(self, logical: str, key: str | None) -> dict | None:
        table = BY_LOGICAL.get(logical)
        return self.tables[table.entity_set].get(key) if table and key else None

    def name_of(self, logical: str | None, key: str | None) -> str | None:
        if logical in self.reference.names:
            return self.reference.names[logical].get(key)
        row = self.find(logical, key) if logical else None
        return row.get(BY_LOGICAL[logical].primary_name) if row else None

    def exists(self, logical: str, key: str) -> bool:
        if logical in REFERENCE_SETS:
            return key in self.reference.names.get(logical, {})
        return self.find(logical, key) is not None

    def expire_delta_tokens(self) -> int:
        """Every delta token issued so far expires; one issued from now on is good (a version past them)."""
        self.expired_through = self.version
        self.version += 1
        return self.expired_through

    # -- writes ------------------------------------------------------------------------------------------

    def create(self, entity_set: str, values: dict, binds: dict, key: str | None = None) -> dict:
        table = TABLES[entity_set]
        key = (key or str(self._uuid())).lower()
        if key in self.tables[entity_set]:
            raise DataverseError(412, "0x80040237", "A record with matching key values already exists.")
        now = stamp(self.now())
        row = self._normalized(table, {table.key: key})
        row |= {"createdon": now, "modifiedon": now}
        self._defaults(table, row)
        status = values.pop("statuscode", None)
        values.pop("statecode", None)  # not valid for create: a record starts in its first state
        if status is not None:
            if table.statuses.get(status, (None, None))[1] != row.get("statecode"):
                raise invalid_state_status()
            row["statuscode"] = status
        changed = self._apply(table, row, values, binds, None)
        self._derive(table, row, None)
        stored = self._store(entity_set, row)
        self._emit("Create", table, stored, None, changed | {table.key})
        self._after_line_write(table, stored)
        return stored

    def update(self, entity_set: str, key: str, values: dict, binds: dict) -> dict:
        table = TABLES[entity_set]
        old = self.get(entity_set, key)
        state_values = {k: values.pop(k) for k in ("statecode", "statuscode") if k in values}
        if values or binds:
            self._check_editable(table, old)
        row = dict(old, **{"@lookup": dict(old["@lookup"])})
        changed = self._apply(table, row, values, binds, old)
        if state_values:
            state, status = check_transition(table, old, state_values.get("statecode"), state_values.get("statuscode"))
            row["statecode"], row["statuscode"] = state, status
            changed |= {"statecode", "statuscode"}
        self._derive(table, row, old)
        row["modifiedon"] = stamp(self.now())
        stored = self._store(entity_set, row)
        self._emit("Update", table, stored, old, changed)
        if state_values:
            self._emit_state(table, stored, old)
        self._after_line_write(table, stored)
        return stored

    def delete(self, entity_set: str, key: str) -> None:
        table = TABLES[entity_set]
        old = self.get(entity_set, key)
        if entity_set in LINE_PARENTS:
            self._check_editable(table, old)
        for lines in table.collections:
            if lines.child_set in LINE_PARENTS and LINE_PARENTS[lines.child_set][0] == entity_set:
                for child in [
                    r
                    for r in self.tables[lines.child_set].values()
                    if r[f"_{lines.child_attribute}_value"] == old[table.key]
                ]:
                    self._remove(TABLES[lines.child_set], child)
        self._remove(table, old)
        self._after_line_write(table, old)

    def _remove(self, table: Table, row: dict) -> None:
        del self.tables[table.entity_set][row[table.key]]
        self.version += 1
        self.tombstones[table.entity_set].append(Tombstone(self.version, row[table.key]))
        self._emit_event(
            Event(
                "Delete",
                table.logical,
                row[table.key],
                {"Target": EntityReference(table.logical, row[table.key])},
                pre=row,
            )
        )

    def upsert_raw(self, entity_set: str, record: dict, modifiedon: str | None = None) -> dict:
        """The admin API's backdoor: a row as given, a new version, no rules and no events."""
        table = TABLES[entity_set]
        key = str(record.get(table.key) or self._uuid()).lower()
        old = self.tables[entity_set].get(key)
        base = dict(old) if old else self._normalized(table, {table.key: key})
        targets = dict(base.get("@lookup", {}))
        for name, value in record.items():
            if name.endswith("@Microsoft.Dynamics.CRM.lookuplogicalname"):
                targets[name.split("@")[0][1:-6]] = value
            elif name in table.money:
                base[name] = money(value)
            elif name in table.decimals:
                base[name] = decimal(value)
            elif name in table.properties and not name.endswith("_base"):
                base[name] = value
        for lookup in table.lookup.values():
            if base.get(lookup.property) and not targets.get(lookup.attribute):
                targets[lookup.attribute] = lookup.targets[0]
        base |= {table.key: key, "@lookup": targets, "modifiedon": modifiedon or stamp(self.now())}
        if entity_set in LINE_PARENTS and "extendedamount" not in record:  # a line's amounts, as Sales keeps them
            base |= self._line_amounts(base)
        return self._store(entity_set, self._normalized(table, base | {"@lookup": targets}))

    # -- the Sales messages ------------------------------------------------------------------------------

    def win_opportunity(self, opportunity_id: str, close: dict, status: int) -> dict:
        """WinOpportunity: the opportunity becomes Won; its actual revenue defaults to the estimate."""
        table = TABLES["opportunities"]
        old = self.get("opportunities", opportunity_id)
        if old["statecode"] != 0:
            raise DataverseError(400, "0x80040515", "The opportunity is already closed.")
        status = table.default_status(1) if status == -1 else status
        if table.statuses.get(status, (None, None))[1] != 1:
            raise invalid_state_status()
        today = self.now().date()
        closed_on = _date_of(close.get("actualend")) or today
        revenue = money(close["actualrevenue"]) if close.get("actualrevenue") is not None else old["estimatedvalue"]
        row = dict(old, statecode=1, statuscode=status, actualvalue=revenue, closeprobability=100)
        row |= {"actualclosedate": closed_on.isoformat(), "modifiedon": stamp(self.now())}
        stored = self._store("opportunities", row)
        self.closes.append({"activity": "opportunityclose", "opportunityid": opportunity_id, **close})
        changed = {"statecode", "statuscode", "actualvalue", "actualclosedate", "closeprobability"}
        self._emit("Update", table, stored, old, frozenset(changed))
        self._emit_state(table, stored, old)
        attrs = {k: v for k, v in close.items() if not isinstance(v, dict)}
        attrs["opportunityid"] = EntityReference("opportunity", opportunity_id, old["name"])
        self._emit_event(
            Event(
                "Win",
                "opportunity",
                opportunity_id,
                {"OpportunityClose": Entity("opportunityclose", None, attrs), "Status": OptionSetValue(status)},
                pre=old,
                post=stored,
            )
        )
        return stored

    def convert_quote(self, quote_id: str, columns: tuple[str, ...] | None, status: int | None, closed_on) -> dict:
        """ConvertQuoteToSalesOrder: an active quote is won on the way; a won quote converts as it is."""
        quotes = TABLES["quotes"]
        quote = self.get("quotes", quote_id)
        if quote["statecode"] not in (1, 2):
            raise invalid_state()
        if quote["statecode"] == 1:
            status = status if status is not None else quotes.default_status(2)
            if quotes.statuses.get(status, (None, None))[1] != 2:
                raise invalid_state_status()
            won = dict(quote, statecode=2, statuscode=status, modifiedon=stamp(self.now()))
            won["closedon"] = (_date_of(closed_on) or self.now().date()).isoformat()
            won = self._store("quotes", won)
            self.closes.append({"activity": "quoteclose", "quoteid": quote_id})
            self._emit("Update", quotes, won, quote, frozenset({"statecode", "statuscode", "closedon"}))
            self._emit_state(quotes, won, quote)
            quote = won
        order = self._order_from(quote)
        self._emit_event(
            Event(
                "ConvertQuoteToSalesOrder",
                "quote",
                quote_id,
                {"QuoteId": quote_id, "ColumnSet": columns},
                {"Entity": self.entity(TABLES["salesorders"], order, None)},
                post=quote,
            )
        )
        return order

    def _order_from(self, quote: dict) -> dict:
        copied = ("name", "discountamount", "freightamount", "paymenttermscode", "shippingmethodcode", "emailaddress")
        values = {k: quote[k] for k in copied}
        values |= {k: v for k, v in quote.items() if k.startswith(("billto_", "shipto_"))}
        binds = {a: (quote["@lookup"].get(a), quote[f"_{a}_value"]) for a in ("customerid", "pricelevelid", "ownerid")}
        binds |= {"transactioncurrencyid": ("transactioncurrency", quote["_transactioncurrencyid_value"])}
        binds |= {
            "quoteid": ("quote", quote["quoteid"]),
            "opportunityid": ("opportunity", quote["_opportunityid_value"]),
        }
        order = self.create("salesorders", values, {a: b for a, b in binds.items() if b[1]})
        for detail in sorted(self._children("quotedetails", "quoteid", quote["quoteid"]), key=_line_order):
            line = {k: detail[k] for k in ("productdescription", "quantity", "priceperunit", "manualdiscountamount")}
            line |= {k: detail[k] for k in ("tax", "lineitemnumber", "sequencenumber", "description")}
            line |= {k: detail[k] for k in ("isproductoverridden", "ispriceoverridden")}
            links = {
                "salesorderid": ("salesorder", order["salesorderid"]),
                "quotedetailid": ("quotedetail", detail["quotedetailid"]),
            }
            for attribute in ("productid", "uomid"):
                if detail[f"_{attribute}_value"]:
                    links[attribute] = (detail["@lookup"][attribute], detail[f"_{attribute}_value"])
            if not detail["isproductoverridden"]:
                line["ispriceoverridden"] = True  # the quoted price, not today's list price
            self.create("salesorderdetails", line, links)
        return self.get("salesorders", order["salesorderid"])

    # -- rules ---------------------------------------------------------------------------------------------

    def _defaults(self, table: Table, row: dict) -> None:
        if "statecode" in table.types:
            first = min(table.states) if table.logical != "product" else 0
            row["statecode"], row["statuscode"] = first, table.default_status(first)
        if "ownerid" in table.lookup:
            row["_ownerid_value"], row["@lookup"]["ownerid"] = self.reference.app_user, "systemuser"
        if "transactioncurrencyid" in table.lookup:
            row["_transactioncurrencyid_value"] = self.reference.currency
            row["@lookup"]["transactioncurrencyid"] = "transactioncurrency"
        if "exchangerate" in table.types:
            row["exchangerate"] = decimal(1)
        if table.entity_set in NUMBERED:
            column, prefix = NUMBERED[table.entity_set]
            self.numbers[table.entity_set] += 1
            code = "".join(self.rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6))
            row[column] = f"{prefix}-{self.numbers[table.entity_set]:05d}-{code}"
        if table.entity_set == "sdkmessageprocessingsteps":
            row |= {"mode": 1, "rank": 1, "stage": 40, "supporteddeployment": 0, "asyncautodelete": False}
        if table.entity_set == "quotes":
            row["revisionnumber"] = 0

    def _apply(self, table: Table, row: dict, values: dict, binds: dict, old: dict | None) -> frozenset[str]:
        changed = set()
        for name, value in values.items():
            if name in table.computed or name == table.key:
                continue
            row[name] = money(value) if name in table.money else decimal(value) if name in table.decimals else value
            changed.add(name)
        for attribute, (target, key) in binds.items():
            if key is not None and not self.exists(target, key):
                raise not_found(target, key)
            row[f"_{attribute}_value"] = key
            row["@lookup"][attribute] = target if key else None
            changed.add(attribute)
        if table.entity_set == "serviceendpoints" and "authvalue" in changed:
            row["isauthvalueset"] = bool(row.get("authvalue"))
        return frozenset(changed)

    def _derive(self, table: Table, row: dict, old: dict | None) -> None:
        """Columns the platform computes from others."""
        if table.entity_set == "contacts":
            row["fullname"] = " ".join(p for p in (row.get("firstname"), row.get("lastname")) if p) or None
            customer_is_account = row["@lookup"].get("parentcustomerid") == "account"
            row["_accountid_value"] = row["_parentcustomerid_value"] if customer_is_account else None
            row["@lookup"]["accountid"] = "account" if row["_accountid_value"] else None
        if table.entity_set == "accounts":
            row["address1_composite"] = seed.composite(row)
        if table.entity_set == "opportunities":
            kind = row["@lookup"].get("customerid")
            for attribute, target in (("accountid", "account"), ("contactid", "contact")):
                row[f"_{attribute}_value"] = row["_customerid_value"] if kind == target else None
                row["@lookup"][attribute] = target if kind == target else None
        if table.entity_set == "products" and not row.get("productnumber"):
            raise DataverseError(400, "0x80043b05", "The product number can not be null.")
        if table.entity_set == "products" and any(
            p["productnumber"] == row["productnumber"] and p["productid"] != row["productid"]
            for p in self.tables["products"].values()
        ):
            raise DataverseError(
                400,
                "0x80043b06",
                "The specified product ID conflicts with the product ID of an existing record. "
                "Specify a different product ID and try again.",
            )
        if table.entity_set in LINE_PARENTS:
            self._line_rules(table, row)

    def _line_rules(self, table: Table, row: dict) -> None:
        parent_set, attribute = LINE_PARENTS[table.entity_set]
        parent = self.find(TABLES[parent_set].logical, row.get(f"_{attribute}_value"))
        if parent is None:
            raise bad_argument(f"The {TABLES[parent_set].logical} of the {table.logical} is required.")
        self._check_editable(TABLES[parent_set], parent)
        product = self.find("product", row.get("_productid_value"))
        if product is not None and not row.get("isproductoverridden"):
            row["productnumber"], row["productname"] = product["productnumber"], product["name"]
            if not row.get("ispriceoverridden"):
                row["priceperunit"] = product["price"]
        elif product is None:
            row["productnumber"] = None
            row["isproductoverridden"] = True
            row["productname"] = row.get("productdescription")
        row |= self._line_amounts(row)
        row["_transactioncurrencyid_value"] = parent["_transactioncurrencyid_value"]

    def _line_amounts(self, line: dict) -> dict:
        return line_amounts(line, volume_per_unit=self.settings.volume_discount == "per_unit")

    def _check_editable(self, table: Table, row: dict) -> None:
        editable = EDITABLE_STATES.get(table.entity_set)
        if table.entity_set in LINE_PARENTS:
            parent_set, attribute = LINE_PARENTS[table.entity_set]
            parent = self.find(TABLES[parent_set].logical, row.get(f"_{attribute}_value"))
            if parent is not None:
                self._check_editable(TABLES[parent_set], parent)
        elif editable is not None and row.get("statecode") not in editable:
            if table.entity_set == "opportunities":
                raise DataverseError(400, "0x80040515", "The opportunity is already closed.")
            raise invalid_state()

    def _after_line_write(self, table: Table, line: dict) -> None:
        """A line's change recalculates its header's totals (a new version of the header)."""
        if table.entity_set not in LINE_PARENTS:
            return
        parent_set, attribute = LINE_PARENTS[table.entity_set]
        parent = self.tables[parent_set].get(line.get(f"_{attribute}_value"))
        if parent is None:
            return
        totals = header_totals(parent, self._children(table.entity_set, attribute, parent[TABLES[parent_set].key]))
        changed = frozenset(k for k, v in totals.items() if parent.get(k) != v)
        if changed:
            stored = self._store(parent_set, dict(parent, **totals, modifiedon=stamp(self.now())))
            self._emit("Update", TABLES[parent_set], stored, parent, changed)

    def _children(self, child_set: str, attribute: str, parent_id: str) -> list[dict]:
        return [r for r in self.tables[child_set].values() if r[f"_{attribute}_value"] == parent_id]

    def _uuid(self) -> uuid.UUID:
        return uuid.uuid4()

    # -- events --------------------------------------------------------------------------------------------

    def _emit(self, message: str, table: Table, row: dict, old: dict | None, changed: frozenset[str]) -> None:
        if not self.listeners:
            return
        attrs = changed | {table.key, "modifiedon"} if message == "Update" else None
        target = self.entity(table, row, attrs)
        outputs = {"id": row[table.key]} if message == "Create" else {}
        self._emit_event(Event(message, table.logical, row[table.key], {"Target": target}, outputs, old, row, changed))

    def _emit_state(self, table: Table, row: dict, old: dict) -> None:
        """The state change also runs the SetState messages (registrations on them still fire)."""
        for message in ("SetState", "SetStateDynamicEntity"):
            inputs = {
                "EntityMoniker": EntityReference(table.logical, row[table.key]),
                "State": OptionSetValue(row["statecode"]),
                "Status": OptionSetValue(row["statuscode"]),
            }
            self._emit_event(Event(message, table.logical, row[table.key], inputs, pre=old, post=row))

    def _emit_event(self, event: Event) -> None:
        if event.entity in REGISTRATION:
            return  # steps cannot be registered on the registration tables themselves
        for listener in self.listeners:
            listener(event)

    def entity(self, table: Table, row: dict, attributes) -> Entity:
        """The row as an SDK Entity: lookups as references, option sets and money typed."""
        names = attributes if attributes is not None else [*table.types, *table.lookup]
        attrs = {}
        for name in names:
            if name in table.lookup:
                key = row.get(f"_{name}_value")
                target = row["@lookup"].get(name)
                attrs[name] = EntityReference(target, key, self.name_of(target, key)) if key else None
            elif name in table.types:
                value = row.get(name)
                if name in ("statecode", "statuscode") and value is not None:
                    value = OptionSetValue(value)
                elif name in table.money and value is not None:
                    value = Money(value)
                elif table.types[name] == "Edm.DateTimeOffset" and value:
                    value = datetime.fromisoformat(value.replace("Z", "+00:00"))
                attrs[name] = value
        return Entity(table.logical, row[table.key], attrs)


def _date_of(value) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).date()
    except ValueError:
        raise bad_argument(f"'{value}' is not a valid date.") from None


def _line_order(line: dict):
    return (line.get("sequencenumber") or 0, line.get("lineitemnumber") or 0, line["createdon"])
