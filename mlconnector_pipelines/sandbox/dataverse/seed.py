"""A deterministic Sales organization: currencies, accounts, contacts, products, opportunities, quotes, orders, invoices.

Rows are stored as the model keeps them: columns by logical name, lookups as `_<attribute>_value`
with the target's logical name under `@lookup`. The data carries the cases a sync meets: lines
that share their header's modifiedon, several rows stamped the same second, one stamped exactly
at midnight, won quotes converted to orders (lines copied, `_quoteid_value` set), amounts a
binary double cannot hold, and products whose number maps to no Business Central item.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from . import DataverseSettings
from .pricing import decimal, header_totals, line_amounts, money

# Business Central's sandbox numbers its items f"{1000 + i}-S" (30 by default): most products use them.
MAPPED_PRODUCTS = 27
UNMAPPED_PRODUCTS = (
    ("SVC-INSTALL", "On-site installation", Decimal("350")),
    ("SVC-WARRANTY-3Y", "Extended warranty, 3 years", Decimal("129.99")),
    ("DV-9001", "Showroom display bundle", Decimal("2450")),
)
# A price a binary double cannot hold after × 3: the order total 1234567890123.4569 (17 significant digits).
HARD_PRICE = Decimal("411522630041.1523")
# The brief's example amount, as a quote line's price.
LONG_PRICE = Decimal("123456789012.3456")

# fmt: off
_COMPANIES = (
    "Fabrikam Outdoor", "Contoso Pharmaceuticals", "Adventure Works Cycles", "Litware Inc.", "Northwind Traders",
    "Tailspin Toys", "Wide World Importers", "Coho Winery", "Alpine Ski House", "Blue Yonder Airlines",
    "City Power & Light", "Proseware Inc.", "Relecloud", "Trey Research", "Woodgrove Bank", "Lucerne Publishing",
    "Margie's Travel", "Humongous Insurance", "Graphic Design Institute", "Southridge Video", "Fourth Coffee",
    "VanArsdel Ltd.", "Wingtip Toys", "Lamna Healthcare", "Consolidated Messenger", "Datum Corporation",
    "Bellows College", "Best For You Organics", "Tasmanian Traders", "Nod Publishers",
)
_FIRST = ("Anna", "Ben", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kaya", "Liam", "Mona")
_LAST = ("Berg", "Chen", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ito", "Jensen", "Kowalski", "Lopez", "Moss")
_CITIES = (
    ("Seattle", "WA", "98101"), ("Chicago", "IL", "60601"), ("Atlanta", "GA", "30303"), ("Denver", "CO", "80202"),
    ("Boston", "MA", "02108"), ("Austin", "TX", "73301"), ("Portland", "OR", "97201"), ("Miami", "FL", "33101"),
)
_GOODS = ("Office chair", "Standing desk", "Desk lamp", "Filing cabinet", "Conference table", "Bookshelf", "Sofa")
_TOPICS = ("Office refit", "New branch furniture", "Annual restock", "Lobby redesign", "Warehouse shelving")
# fmt: on


def guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# The organization's currencies: ISO code, name, symbol, precision, units per base currency (USD first: the base).
CURRENCIES = (
    ("USD", "US Dollar", "$", 2, Decimal("1")),
    ("EUR", "Euro", "€", 2, Decimal("0.92")),
    ("JPY", "Japanese Yen", "¥", 0, Decimal("150")),
)


@dataclass
class Reference:
    """Ids the seed links to; `names` holds the tables the simulator keeps as ids only (lookups are checked, named)."""

    app_user: str
    reps: list[str]
    currency: str  # the organization's base currency (USD): every seeded record is in it
    pricelevel: str
    uom: str
    uomschedule: str
    names: dict[str, dict[str, str]] = field(default_factory=dict)  # logical -> id -> name


@dataclass
class SeedData:
    rows: dict[str, list[dict]]
    reference: Reference
    live_account: str  # the account live mode renames and moves first


class _Clock:
    """Moments within the history window, at whole seconds, some deliberately shared."""

    def __init__(self, rng: random.Random, start: datetime, end: datetime):
        self.rng, self.start, self.seconds = rng, start, max(int((end - start).total_seconds()) - 1, 1)
        self.recent: list[datetime] = []

    def moment(self) -> datetime:
        if self.recent and self.rng.random() < 0.08:  # a tie with an earlier row
            return self.rng.choice(self.recent)
        stamp = self.start + timedelta(seconds=self.rng.randrange(self.seconds))
        self.recent.append(stamp)
        return stamp


def build(settings: DataverseSettings) -> SeedData:
    rng = random.Random(settings.seed)
    start, end = settings.history()
    clock = _Clock(rng, start, end)
    ref = _reference(rng)
    rows: dict[str, list[dict]] = {"transactioncurrencies": _currencies(settings, ref, start)}
    rows["accounts"] = _accounts(rng, clock, ref, settings.volumes.accounts)
    rows["contacts"] = _contacts(rng, clock, ref, rows["accounts"], settings.volumes.contacts)
    for i, account in enumerate(rows["accounts"]):  # primary contacts, once contacts exist
        mine = [c for c in rows["contacts"] if c.get("_parentcustomerid_value") == account["accountid"]]
        if mine and i % 3 != 2:
            _link(account, "primarycontactid", "contact", mine[0]["contactid"])
    rows["products"] = _products(rng, clock, ref)
    rows["opportunities"] = _opportunities(rng, clock, ref, rows, settings.volumes.opportunities)
    _quotes(rng, clock, ref, rows, settings.volumes.quotes)
    _orders(rng, clock, ref, rows, settings.volumes.direct_orders)
    _invoices(rng, clock, ref, rows, settings.volumes.invoices)
    # One row is stamped exactly at midnight: a daily window's boundary.
    midnight = (start + timedelta(days=min(10, max((end - start).days - 1, 0)))).replace(hour=0, minute=0, second=0)
    rows["opportunities"][1]["modifiedon"] = midnight
    rows["opportunities"][1]["createdon"] = min(rows["opportunities"][1]["createdon"], midnight)
    return SeedData(rows, ref, live_account=rows["accounts"][0]["accountid"])


def _reference(rng: random.Random) -> Reference:
    ref = Reference(
        app_user=guid(rng),
        reps=[guid(rng) for _ in range(3)],
        currency=guid(rng),
        pricelevel=guid(rng),
        uom=guid(rng),
        uomschedule=guid(rng),
    )
    ref.names = {
        "systemuser": {
            ref.app_user: "# MLC Connector",
            **dict(zip(ref.reps, ("Alex Rivera", "Sam Patel", "Kim Lee"), strict=True)),
        },
        "team": {},
        "pricelevel": {ref.pricelevel: "Retail USD"},
        "uom": {ref.uom: "Primary Unit"},
        "uomschedule": {ref.uomschedule: "Default Unit"},
        "plugintype": {},
    }
    return ref


def _currencies(settings: DataverseSettings, ref: Reference, at: datetime) -> list[dict]:
    """The base currency keeps the reference id; the others take ids of their own generator (the seed's stays as it was)."""
    ids = random.Random(settings.seed + 5)
    rows = []
    for code, name, symbol, precision, rate in CURRENCIES:
        row = {"transactioncurrencyid": ref.currency if code == "USD" else guid(ids), "isocurrencycode": code}
        row |= {"currencyname": name, "currencysymbol": symbol, "currencyprecision": precision}
        row |= {"exchangerate": decimal(rate), "statecode": 0, "statuscode": 1, "createdon": at, "modifiedon": at}
        rows.append(row)
    return rows


def _link(row: dict, attribute: str, target: str, target_id: str | None) -> None:
    row[f"_{attribute}_value"] = target_id
    row.setdefault("@lookup", {})[attribute] = target if target_id else None


def _stamped(clock: _Clock, row: dict, at: datetime | None = None) -> dict:
    modified = at or clock.moment()
    row["createdon"] = modified - timedelta(seconds=clock.rng.randrange(0, 86400 * 3))
    row["modifiedon"] = modified
    return row


def _owned(rng: random.Random, ref: Reference, row: dict) -> dict:
    _link(row, "ownerid", "systemuser", rng.choice(ref.reps))
    _link(row, "transactioncurrencyid", "transactioncurrency", ref.currency)
    return row


def _address(rng: random.Random, prefix: str) -> dict:
    city, state, postal = rng.choice(_CITIES)
    return {
        f"{prefix}_line1": f"{rng.randint(1, 9999)} {rng.choice(('Main', 'Oak', 'Pine', 'Lake', 'Hill'))} Street",
        f"{prefix}_line2": None,
        f"{prefix}_city": city,
        f"{prefix}_stateorprovince": state,
        f"{prefix}_postalcode": postal,
        f"{prefix}_country": "United States",
    }


def composite(row: dict) -> str | None:
    parts = [row.get("address1_line1"), row.get("address1_line2")]
    city = " ".join(p for p in (row.get("address1_city"), row.get("address1_stateorprovince")) if p)
    parts += [" ".join(p for p in (city, row.get("address1_postalcode")) if p), row.get("address1_country")]
    text = "\r\n".join(p for p in parts if p)
    return text or None


def _accounts(rng: random.Random, clock: _Clock, ref: Reference, count: int) -> list[dict]:
    accounts = []
    for i in range(count):
        name = _COMPANIES[i % len(_COMPANIES)] + (f" {i // len(_COMPANIES) + 1}" if i >= len(_COMPANIES) else "")
        row = {
            "accountid": guid(rng),
            "name": name,
            "accountnumber": f"ACC-{10000 + i * 10}",  # BC numbers its own customers C10000…: no collision
            "emailaddress1": f"info{i}@example.com",
            "telephone1": f"+1 555 01{i:02d}",
            "websiteurl": f"https://www.example{i}.com",
            **_address(rng, "address1"),
            "paymenttermscode": rng.choice((1, 2, 3)),
            "creditlimit": money(rng.choice((0, 10000, 50000, 250000))),
            "statecode": 1 if i in (count - 1, count - 2) else 0,
            "statuscode": 2 if i in (count - 1, count - 2) else 1,
        }
        row["address1_composite"] = composite(row)
        _link(row, "primarycontactid", "contact", None)
        _link(row, "parentaccountid", "account", accounts[0]["accountid"] if i % 9 == 4 and accounts else None)
        _link(row, "defaultpricelevelid", "pricelevel", ref.pricelevel)
        accounts.append(_stamped(clock, _owned(rng, ref, row)))
    # Several accounts imported in one batch: the same second.
    batch = clock.moment()
    for row in accounts[3:8]:
        row["modifiedon"] = batch
        row["createdon"] = min(row["createdon"], batch)
    return accounts


def _contacts(rng: random.Random, clock: _Clock, ref: Reference, accounts: list[dict], count: int) -> list[dict]:
    contacts = []
    for i in range(count):
        first, last = _FIRST[i % len(_FIRST)], _LAST[(i * 7) % len(_LAST)]
        row = {
            "contactid": guid(rng),
            "firstname": first,
            "lastname": last,
            "fullname": f"{first} {last}",
            "emailaddress1": f"{first.lower()}.{last.lower()}{i}@example.com",
            "telephone1": f"+1 555 02{i:02d}",
            "mobilephone": None,
            "jobtitle": rng.choice(("Purchasing manager", "CFO", "Office manager", "Facilities lead")),
            **_address(rng, "address1"),
            "statecode": 0,
            "statuscode": 1,
        }
        account = accounts[i % len(accounts)] if i % 6 else None
        _link(row, "parentcustomerid", "account", account["accountid"] if account else None)
        _link(row, "accountid", "account", account["accountid"] if account else None)
        contacts.append(_stamped(clock, _owned(rng, ref, row)))
    return contacts


def _products(rng: random.Random, clock: _Clock, ref: Reference) -> list[dict]:
    products = []
    catalogue = [(f"{1000 + i}-S", f"{_GOODS[i % len(_GOODS)]} {i}", None) for i in range(MAPPED_PRODUCTS)]
    for number, name, price in [*catalogue, *UNMAPPED_PRODUCTS]:
        price = price if price is not None else Decimal(rng.randint(2000, 120000)) / 100
        row = {
            "productid": guid(rng),
            "name": name,
            "productnumber": number,
            "description": None,
            "productstructure": 1,
            "producttypecode": 1,
            "price": money(price),
            "standardcost": money(price * Decimal("0.6")),
            "currentcost": money(price * Decimal("0.62")),
            "quantitydecimal": 0,
            "quantityonhand": decimal(rng.randint(0, 400)),
            "isstockitem": not number.startswith("SVC"),
            "statecode": 0,
            "statuscode": 1,
        }
        _link(row, "defaultuomid", "uom", ref.uom)
        _link(row, "defaultuomscheduleid", "uomschedule", ref.uomschedule)
        _link(row, "pricelevelid", "pricelevel", ref.pricelevel)
        _link(row, "parentproductid", "product", None)
        _link(row, "transactioncurrencyid", "transactioncurrency", ref.currency)
        products.append(_stamped(clock, row))
    return products


def _customer(rng: random.Random, rows: dict, row: dict, attribute: str = "customerid") -> None:
    if rng.random() < 0.85:
        _link(row, attribute, "account", rng.choice(rows["accounts"][:-2])["accountid"])
    else:
        _link(row, attribute, "contact", rng.choice(rows["contacts"])["contactid"])


def _opportunities(rng: random.Random, clock: _Clock, ref: Reference, rows: dict, count: int) -> list[dict]:
    opportunities = []
    for i in range(count):
        value = money(Decimal(rng.randint(1000, 250000)))
        won, lost = i % 10 in (0, 1, 2), i % 10 == 3
        row = {
            "opportunityid": guid(rng),
            "name": f"{rng.choice(_TOPICS)} {i + 1}",
            "statecode": 1 if won else 2 if lost else 0,
            "statuscode": 3 if won else rng.choice((4, 5)) if lost else rng.choice((1, 1, 2)),
            "estimatedvalue": value,
            "estimatedclosedate": None,
            "actualvalue": value if won else None,
            "actualclosedate": None,
            "isrevenuesystemcalculated": False,
            "closeprobability": 100 if won else 0 if lost else rng.choice((10, 30, 50, 70)),
            "totalamount": None,
            "totallineitemamount": None,
            "totaldiscountamount": None,
            "totaltax": None,
            "discountamount": None,
            "discountpercentage": None,
            "exchangerate": decimal(1),
            "description": None,
        }
        _customer(rng, rows, row)
        customer_is_account = row["@lookup"]["customerid"] == "account"
        _link(row, "parentaccountid", "account", row["_customerid_value"] if customer_is_account else None)
        _link(row, "parentcontactid", "contact", None if customer_is_account else row["_customerid_value"])
        _link(row, "accountid", "account", row["_customerid_value"] if customer_is_account else None)
        _link(row, "contactid", "contact", None if customer_is_account else row["_customerid_value"])
        _link(row, "pricelevelid", "pricelevel", ref.pricelevel)
        _stamped(clock, _owned(rng, ref, row))
        day = row["modifiedon"].date() + timedelta(days=rng.randint(5, 60))
        row["estimatedclosedate"] = day.isoformat()
        if won or lost:
            row["actualclosedate"] = row["modifiedon"].date().isoformat()
        opportunities.append(row)
    return opportunities


def _header(rng: random.Random, ref: Reference, rows: dict, key: str, name: str, source: dict | None) -> dict:
    row = {key: guid(rng), "name": name, "discountamount": None, "freightamount": None}
    row |= {"paymenttermscode": rng.choice((1, 2, 3)), "shippingmethodcode": rng.choice((1, 2)), "emailaddress": None}
    row |= _address(rng, "billto") | _address(rng, "shipto")
    if source is not None:
        row["_customerid_value"] = source["_customerid_value"]
        row.setdefault("@lookup", {})["customerid"] = source["@lookup"]["customerid"]
    else:
        _customer(rng, rows, row)
    _link(row, "pricelevelid", "pricelevel", ref.pricelevel)
    return _owned(rng, ref, row)


def _line(rng: random.Random, ref: Reference, rows: dict, key: str, parent: str, parent_id: str, n: int) -> dict:
    product = rng.choice(rows["products"])
    row = {
        key: guid(rng),
        f"{parent}detailname": None,
        "productnumber": product["productnumber"],
        "productdescription": None,
        "productname": product["name"],
        "isproductoverridden": False,
        "ispriceoverridden": False,
        "quantity": decimal(rng.randint(1, 12)),
        "priceperunit": product["price"],
        "manualdiscountamount": None,
        "volumediscountamount": None,
        "tax": None,
        "lineitemnumber": n,
        "sequencenumber": n,
        "description": None,
    }
    _link(row, f"{parent}id", parent, parent_id)
    _link(row, "productid", "product", product["productid"])
    _link(row, "uomid", "uom", ref.uom)
    _link(row, "transactioncurrencyid", "transactioncurrency", ref.currency)
    return row | line_amounts(row)


def _settle(header: dict, lines: list[dict], clock: _Clock, at: datetime | None = None) -> None:
    """Totals from the lines; the lines share the header's modifiedon (one save writes them all)."""
    header |= header_totals(header, lines)
    _stamped(clock, header, at)
    for line in lines:
        line["createdon"], line["modifiedon"] = header["createdon"], header["modifiedon"]


def _quotes(rng: random.Random, clock: _Clock, ref: Reference, rows: dict, count: int) -> None:
    quotes, details = rows.setdefault("quotes", []), rows.setdefault("quotedetails", [])
    candidates = [o for o in rows["opportunities"] if o["statecode"] != 2]
    won_count, active_count = count * 2 // 5, count // 4
    for i in range(count):
        opportunity = candidates[i % len(candidates)]
        quote = _header(rng, ref, rows, "quoteid", f"Quote for {opportunity['name']}", opportunity)
        quote |= {"quotenumber": f"QUO-{1000 + i:05d}-{_code(rng)}", "revisionnumber": 0}
        quote |= {"effectivefrom": None, "effectiveto": None, "closedon": None}
        state, status = (2, 4) if i < won_count else (1, rng.choice((2, 3))) if i < won_count + active_count else (0, 1)
        quote |= {"statecode": state, "statuscode": status}
        _link(quote, "opportunityid", "opportunity", opportunity["opportunityid"])
        lines = [
            _line(rng, ref, rows, "quotedetailid", "quote", quote["quoteid"], n + 1) for n in range(rng.randint(1, 5))
        ]
        if i == count - 1:  # a draft quote with the long price
            lines[0] |= {"priceperunit": money(LONG_PRICE), "quantity": decimal(1), "ispriceoverridden": True}
            lines[0] |= line_amounts(lines[0])
        if i % 7 == 3:  # the installation service maps to no ERP item
            install = next(p for p in rows["products"] if p["productnumber"] == "SVC-INSTALL")
            lines[-1] |= {
                "productnumber": "SVC-INSTALL",
                "productname": install["name"],
                "priceperunit": install["price"],
            }
            _link(lines[-1], "productid", "product", install["productid"])
            lines[-1] |= line_amounts(lines[-1])
        _settle(quote, lines, clock)
        if state == 2:
            quote["closedon"] = quote["modifiedon"].date().isoformat()
        quotes.append(quote)
        details += lines


def _code(rng: random.Random) -> str:
    return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6))


def _order_from(rng: random.Random, ref: Reference, rows: dict, quote: dict | None, n: int) -> tuple[dict, list]:
    order = _header(rng, ref, rows, "salesorderid", quote["name"].replace("Quote", "Order") if quote else "", quote)
    order |= {"ordernumber": f"ORD-{1000 + n:05d}-{_code(rng)}", "ispricelocked": False}
    order |= {"submitdate": None, "datefulfilled": None, "requestdeliveryby": None}
    _link(order, "quoteid", "quote", quote["quoteid"] if quote else None)
    _link(order, "opportunityid", "opportunity", quote["_opportunityid_value"] if quote else None)
    lines = []
    if quote is not None:
        for detail in (d for d in rows["quotedetails"] if d["_quoteid_value"] == quote["quoteid"]):
            line = {k: v for k, v in detail.items() if k not in ("quotedetailid", "quotedetailname", "@lookup")}
            line |= {"salesorderdetailid": guid(rng), "salesorderdetailname": None}
            line |= {"quantityshipped": None, "quantitybackordered": None, "quantitycancelled": None}
            line |= {"requestdeliveryby": None, "@lookup": dict(detail["@lookup"])}
            line.pop("_quoteid_value")
            line["@lookup"].pop("quoteid")
            _link(line, "salesorderid", "salesorder", order["salesorderid"])
            _link(line, "quotedetailid", "quotedetail", detail["quotedetailid"])
            _link(line, "salesrepid", "systemuser", None)
            lines.append(line)
    else:
        order["name"] = f"Direct order {n + 1}"
        for k in range(rng.randint(1, 4)):
            line = _line(rng, ref, rows, "salesorderdetailid", "salesorder", order["salesorderid"], k + 1)
            line |= {"quantityshipped": None, "quantitybackordered": None, "quantitycancelled": None}
            line |= {"requestdeliveryby": None}
            _link(line, "quotedetailid", "quotedetail", None)
            _link(line, "salesrepid", "systemuser", rng.choice(ref.reps))
            lines.append(line)
    return order, lines


def _orders(rng: random.Random, clock: _Clock, ref: Reference, rows: dict, direct: int) -> None:
    orders, details = rows.setdefault("salesorders", []), rows.setdefault("salesorderdetails", [])
    won = [q for q in rows["quotes"] if q["statecode"] == 2]
    converted = won[: max(len(won) - 2, 1)]  # two won quotes are not converted yet
    sources = [*converted, *([None] * direct)]
    for n, quote in enumerate(sources):
        order, lines = _order_from(rng, ref, rows, quote, n)
        if quote is None and n == len(sources) - 1:  # the total a double cannot hold
            del lines[1:]
            lines[0] |= {"priceperunit": money(HARD_PRICE), "quantity": decimal(3), "ispriceoverridden": True}
            lines[0] |= line_amounts(lines[0])
        state, status = rng.choice(((0, 1), (0, 2), (1, 3), (3, 100001), (4, 100003)))
        order |= {"statecode": state, "statuscode": status}
        at = clock.moment() if quote is None else max(clock.moment(), quote["modifiedon"])
        _settle(order, lines, clock, at)
        orders.append(order)
        details += lines


def _invoices(rng: random.Random, clock: _Clock, ref: Reference, rows: dict, count: int) -> None:
    invoices, details = rows.setdefault("invoices", []), rows.setdefault("invoicedetails", [])
    orders = sorted(rows["salesorders"], key=lambda o: (o["statecode"] != 4, o["ordernumber"]))[:count]
    for n, order in enumerate(orders):
        invoice = _header(rng, ref, rows, "invoiceid", order["name"].replace("Order", "Invoice"), order)
        invoice |= {"invoicenumber": f"INV-{1000 + n:05d}-{_code(rng)}", "ispricelocked": True}
        invoice |= {"datedelivered": None, "lastbackofficesubmit": None}
        _link(invoice, "salesorderid", "salesorder", order["salesorderid"])
        _link(invoice, "opportunityid", "opportunity", order["_opportunityid_value"])
        lines = []
        for source in (d for d in rows["salesorderdetails"] if d["_salesorderid_value"] == order["salesorderid"]):
            line = {k: v for k, v in source.items() if k not in ("salesorderdetailid", "salesorderdetailname")}
            line |= {"invoicedetailid": guid(rng), "invoicedetailname": None, "actualdeliveryon": None}
            line["@lookup"] = {k: v for k, v in source["@lookup"].items() if k not in ("quotedetailid", "salesrepid")}
            for dropped in ("_quotedetailid_value", "_salesrepid_value", "_salesorderid_value", "requestdeliveryby"):
                line.pop(dropped, None)
            line["@lookup"].pop("salesorderid")
            _link(line, "invoiceid", "invoice", invoice["invoiceid"])
            _link(line, "salesorderdetailid", "salesorderdetail", source["salesorderdetailid"])
            lines.append(line)
        paid = n % 3 == 0
        invoice |= {"statecode": 2 if paid else 0, "statuscode": 100001 if paid else rng.choice((1, 4))}
        _settle(invoice, lines, clock, max(clock.moment(), order["modifiedon"]))
        invoice["duedate"] = (invoice["modifiedon"].date() + timedelta(days=30)).isoformat()
        invoices.append(invoice)
        details += lines
