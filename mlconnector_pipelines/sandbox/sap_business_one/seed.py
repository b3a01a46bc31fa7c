"""Deterministic SAP Business One data: a distributor with three regional warehouses.

Documents carry UpdateDate (a date) and UpdateTime (time of day) as separate fields, as the
Service Layer does; lines carry account, warehouse and cost-centre (profit centre) codes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

REGIONS = [("NORTH", "North region", "WH-N"), ("SOUTH", "South region", "WH-S"), ("WEST", "West region", "WH-W")]
PRODUCT_LINES = ["PUMPS", "VALVES", "FITTINGS", "HOSES"]
ACCOUNTS = [
    # Code, Name, FatherAccountKey, ActiveAccount ("tYES" = postable), AccountType
    ("_SYS00000000001", "Assets", None, "tNO", "at_Other"),
    ("_SYS00000000002", "Revenues", None, "tNO", "at_Revenues"),
    ("_SYS00000000003", "Expenses", None, "tNO", "at_Expenses"),
    ("110000", "Cash and bank", "_SYS00000000001", "tYES", "at_Other"),
    ("120000", "Accounts receivable", "_SYS00000000001", "tYES", "at_Other"),
    ("140000", "Inventory", "_SYS00000000001", "tYES", "at_Other"),
    ("210000", "Accounts payable", "_SYS00000000001", "tYES", "at_Other"),
    ("410000", "Sales revenue", "_SYS00000000002", "tYES", "at_Revenues"),
    ("420000", "Service revenue", "_SYS00000000002", "tYES", "at_Revenues"),
    ("510000", "Cost of goods sold", "_SYS00000000003", "tYES", "at_Expenses"),
    ("520000", "Freight", "_SYS00000000003", "tYES", "at_Expenses"),
    ("610000", "Warehouse rent", "_SYS00000000003", "tYES", "at_Expenses"),
]
DOCUMENT_SETS = {"Invoices": ("C", "410000"), "PurchaseInvoices": ("V", "510000"), "PurchaseOrders": ("V", "510000")}
PAYMENT_SETS = {"IncomingPayments": "C", "VendorPayments": "V"}
KEYS = {
    "Invoices": "DocEntry",
    "PurchaseInvoices": "DocEntry",
    "PurchaseOrders": "DocEntry",
    "IncomingPayments": "DocEntry",
    "VendorPayments": "DocEntry",
    "JournalEntries": "JdtNum",
    "Items": "ItemCode",
    "BusinessPartners": "CardCode",
    "ChartOfAccounts": "Code",
    "ProfitCenters": "CenterCode",
}


@dataclass
class SapVolumes:
    business_partners: int = 30
    items: int = 40
    documents: int = 60  # per document entity set
    journal_entries: int = 80


@dataclass
class SapCompanyData:
    company_db: str
    entities: dict[str, list[dict]] = field(default_factory=dict)


# Amounts no double holds (17+ significant digits, 9 decimals) and a six-decimal price, on one
# document and one journal entry per company.
HARD_PRICE = Decimal("1234.567891")
VAT_RATE, MICRO = Decimal("0.0725"), Decimal("0.000001")
HARD_AMOUNTS = (Decimal("12345678901.234567891"), Decimal("1000000000000000.01"), Decimal("0.000000001"))


def stamp(moment: datetime, zone: ZoneInfo) -> tuple[str, str]:
    """UpdateDate and UpdateTime as the server writes them: its own local time."""
    local = moment.astimezone(zone)
    return local.strftime("%Y-%m-%d"), local.strftime("%H:%M:%S")


def generate(
    company_db: str, *, seed: int, start: datetime, end: datetime, volumes: SapVolumes, server_timezone: str = "UTC"
) -> SapCompanyData:
    rng = random.Random(seed)
    zone = ZoneInfo(server_timezone)
    span = int((end - start).total_seconds())
    data = SapCompanyData(company_db)

    def _stamp(moment: datetime) -> tuple[str, str]:
        return stamp(moment, zone)

    def moment() -> datetime:
        return start + timedelta(seconds=rng.randrange(span))

    def updated() -> dict:
        date, time = _stamp(moment())
        return {"UpdateDate": date, "UpdateTime": time}

    data.entities["ProfitCenters"] = [
        {
            "CenterCode": code,
            "CenterName": name,
            "GroupCode": "REGION",
            "InWhichDimension": 1,
            "Active": "tYES",
            "EffectiveFrom": "2024-01-01",
            **updated(),
        }
        for code, name, _ in REGIONS
    ]
    data.entities["ChartOfAccounts"] = [
        {
            "Code": code,
            "Name": name,
            "FatherAccountKey": father,
            "ActiveAccount": active,
            "AccountType": kind,
            "AcctCurrency": "##",
            "Balance": 0.0,
            "Levels": 1 if father is None else 2,
            **updated(),
        }
        for code, name, father, active, kind in ACCOUNTS
    ]
    partners = []
    for i in range(volumes.business_partners):
        kind = "C" if i % 3 else "V"
        region = REGIONS[i % len(REGIONS)]
        partners.append(
            {
                "CardCode": f"{kind}{20000 + i}",
                "CardName": f"{['Acme', 'Globex', 'Initech', 'Umbrella'][i % 4]} {i}",
                "CardType": "cCustomer" if kind == "C" else "cSupplier",
                "Territory": i % len(REGIONS) + 1,
                "Currency": "USD",
                "CurrentAccountBalance": round(rng.uniform(0, 20000), 2),
                "U_Region": region[0],
                **updated(),
            }
        )
    data.entities["BusinessPartners"] = partners
    items = []
    for i in range(volumes.items):
        items.append(
            {
                "ItemCode": f"A{1000 + i}",
                "ItemName": f"{PRODUCT_LINES[i % 4].title()} model {i}",
                "ItemsGroupCode": 100 + i % 4,
                "U_ProductLine": PRODUCT_LINES[i % 4],
                "InventoryItem": "tYES",
                "SalesItem": "tYES",
                "PurchaseItem": "tYES",
                "QuantityOnStock": float(rng.randint(0, 900)),
                "AvgStdPrice": round(rng.uniform(5, 400), 2),
                "ItemWarehouseInfoCollection": [
                    {"WarehouseCode": wh, "InStock": float(rng.randint(0, 300))} for _, _, wh in REGIONS
                ],
                **updated(),
            }
        )
    data.entities["Items"] = items
    doc_entry = 0
    for entity_set, (party_kind, account) in DOCUMENT_SETS.items():
        docs = []
        for _ in range(volumes.documents):
            doc_entry += 1
            when = moment()
            party = rng.choice([p for p in partners if p["CardCode"].startswith(party_kind)])
            lines = []
            for line_num in range(rng.randint(1, 4)):
                item = rng.choice(items)
                region = rng.choice(REGIONS)
                qty = float(rng.randint(1, 30))
                price = round(item["AvgStdPrice"] * (1.35 if party_kind == "C" else 1.0), 2)
                lines.append(
                    {
                        "LineNum": line_num,
                        "ItemCode": item["ItemCode"],
                        "ItemDescription": item["ItemName"],
                        "Quantity": qty,
                        "Price": price,
                        "LineTotal": round(qty * price, 2),
                        "WarehouseCode": region[2],
                        "AccountCode": account,
                        "CostingCode": region[0],
                        "U_ProductLine": item["U_ProductLine"],
                    }
                )
            if not docs:  # the first document: a six-decimal price and a total no double holds
                lines[0].update(Quantity=Decimal(3), Price=HARD_PRICE, LineTotal=3 * HARD_PRICE)
                lines.append(
                    {
                        **lines[0],
                        "LineNum": len(lines),
                        "Quantity": Decimal(1),
                        "Price": HARD_AMOUNTS[0],
                        "LineTotal": HARD_AMOUNTS[0],
                    }
                )
            date, time = _stamp(when)
            total = (
                sum(Decimal(str(line["LineTotal"])) for line in lines)
                if not docs
                else round(sum(line["LineTotal"] for line in lines), 2)
            )
            docs.append(
                {
                    "DocEntry": doc_entry,
                    "DocNum": 100000 + doc_entry,
                    "DocDate": (when - timedelta(days=1)).strftime("%Y-%m-%d"),
                    "DocDueDate": (when + timedelta(days=30)).strftime("%Y-%m-%d"),
                    "CardCode": party["CardCode"],
                    "CardName": party["CardName"],
                    "DocTotal": total,
                    # Amounts the Service Layer sends beside DocTotal: the tax, and what is paid (nothing yet on
                    # the first documents, so a page holds only whole numbers before decimals come).
                    "VatSum": (Decimal(str(total)) * VAT_RATE).quantize(MICRO),
                    "PaidToDate": 0 if len(docs) < 10 else total,
                    "DocCurrency": "USD",
                    "DocumentStatus": rng.choice(["bost_Open", "bost_Close"]),
                    "Cancelled": "tNO",
                    "UpdateDate": date,
                    "UpdateTime": time,
                    "DocumentLines": lines,
                }
            )
        data.entities[entity_set] = docs
    for entity_set, party_kind in PAYMENT_SETS.items():
        payments = []
        for _ in range(volumes.documents // 2):
            doc_entry += 1
            party = rng.choice([p for p in partners if p["CardCode"].startswith(party_kind)])
            payments.append(
                {
                    "DocEntry": doc_entry,
                    "DocNum": 200000 + doc_entry,
                    "DocDate": moment().strftime("%Y-%m-%d"),
                    "CardCode": party["CardCode"],
                    "CardName": party["CardName"],
                    "TransferSum": round(rng.uniform(100, 9000), 2),
                    "CashSum": 0.0,
                    "DocCurrency": "USD",
                    "Cancelled": "tNO",
                    **updated(),
                }
            )
        data.entities[entity_set] = payments
    journals = [_hard_journal(_stamp(start + timedelta(hours=13)))]
    for jdt in range(2, volumes.journal_entries + 1):
        when = moment()
        amount = round(rng.uniform(50, 8000), 2)
        region = rng.choice(REGIONS)
        debit_account, credit_account = rng.choice([("510000", "140000"), ("610000", "110000"), ("120000", "410000")])
        date, time = _stamp(when)
        journals.append(
            {
                "JdtNum": jdt,
                "ReferenceDate": date,
                "Memo": f"Journal {jdt}",
                "TransactionCode": "",
                "UpdateDate": date,
                "UpdateTime": time,
                "JournalEntryLines": [
                    {
                        "Line_ID": 0,
                        "AccountCode": debit_account,
                        "Debit": amount,
                        "Credit": 0.0,
                        "CostingCode": region[0],
                        "LineMemo": "debit",
                    },
                    {
                        "Line_ID": 1,
                        "AccountCode": credit_account,
                        "Debit": 0.0,
                        "Credit": amount,
                        "CostingCode": region[0],
                        "LineMemo": "credit",
                    },
                ],
            }
        )
    data.entities["JournalEntries"] = journals
    _shape_stamps(data, start, end, zone)
    return data


def _hard_journal(stamped: tuple[str, str]) -> dict:
    date, time = stamped
    lines = [
        {
            "Line_ID": n,
            "AccountCode": "610000",
            "Debit": amount,
            "Credit": Decimal(0),
            "CostingCode": "NORTH",
            "LineMemo": "debit",
        }
        for n, amount in enumerate(HARD_AMOUNTS)
    ]
    lines.append(
        {
            "Line_ID": len(lines),
            "AccountCode": "110000",
            "Debit": Decimal(0),
            "Credit": sum(HARD_AMOUNTS),
            "CostingCode": "NORTH",
            "LineMemo": "credit",
        }
    )
    return {
        "JdtNum": 1,
        "ReferenceDate": date,
        "Memo": "Journal 1 (large amounts)",
        "TransactionCode": "",
        "UpdateDate": date,
        "UpdateTime": time,
        "JournalEntryLines": lines,
    }


def _shape_stamps(data: SapCompanyData, start: datetime, end: datetime, zone: ZoneInfo) -> None:
    """Stamps that sit on window boundaries, and some with no time of day, in every entity.

    Each day one record is stamped at local midnight and, when the server is not on UTC, one at
    the local time of UTC midnight (the boundary of UTC windows); every 11th record has a null
    UpdateTime, as records changed by some B1 processes do.
    """
    days = []
    day = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    while day < end:
        days.append(day)
        day += timedelta(days=1)
    for records in data.entities.values():
        if len(records) < 3:
            continue
        for n, utc_midnight in enumerate(days):
            local_midnight = datetime.combine(utc_midnight.date(), datetime.min.time(), zone)
            picks = [(local_midnight, 2 * n)] + (
                [] if zone.utcoffset(utc_midnight) == timedelta(0) else [(utc_midnight, 2 * n + 1)]
            )
            for moment, index in picks:
                if start <= moment < end:
                    record = records[index % len(records)]
                    record["UpdateDate"], record["UpdateTime"] = stamp(moment, zone)
        for index in range(5, len(records), 11):
            records[index]["UpdateTime"] = None
