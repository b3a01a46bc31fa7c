"""The sandbox's LookML: explores over the warehouse tables the ERP flows load, compiled to SQL.

A customer's model is theirs; this one exists so the demo's figures (a GL summary, vendor
balances) are computed from the Business Central data the first flow loaded. Filter
expressions follow Looker's filter grammar for the common cases and refuse the rest clearly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

MODEL = "mlconnector_demo"


class QueryError(Exception):
    """A query Looker would refuse: (status, message, field or None)."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


@dataclass(frozen=True)
class Field:
    name: str  # "<view>.<field>", as queries and results name it
    label: str
    category: str  # dimension | measure
    type: str  # Looker's field type: string, number, yesno, date_date, date_month, sum, count...
    sql: str  # over the explore's table, aliased t
    filter_column: str = ""  # what a date filter compares (a month's underlying date); default `sql`

    @property
    def is_numeric(self) -> bool:
        return self.type in ("number", "sum", "count", "average", "count_distinct", "min", "max")

    @property
    def is_date(self) -> bool:
        return self.type.startswith("date_")


@dataclass(frozen=True)
class Explore:
    name: str
    label: str
    table: str  # a warehouse table, or a derived table: a parenthesized SELECT (LookML's derived_table)
    fields: dict[str, Field]

    @property
    def from_clause(self) -> str:
        return f"{self.table} AS t" if self.table.startswith("(") else f'"{self.table}" AS t'


def _explore(name: str, label: str, table: str, fields: list[tuple]) -> Explore:
    return Explore(name, label, table, {f"{name}.{spec[0]}": Field(f"{name}.{spec[0]}", *spec[1:]) for spec in fields})


_COMPANY = ("company_name", "Company", "dimension", "string", "t._company_name")

# Sales per G/L entry with the entry's AREA dimension: what the weekly marketplace-fee allocation
# spreads over cost centres (a derived table, as a LookML view with derived_table: sql would be).
_SALES_BY_AREA = """(
    SELECT g._company_name, g.posting_date, coalesce(d.value_code, 'NONE') AS area,
           g.credit_amount - g.debit_amount AS sales
    FROM bc_general_ledger_entries g
    LEFT JOIN bc_general_ledger_entry_dimensions d
      ON d._company_id = g._company_id AND d._parent_id = g.id AND d.code = 'AREA'
    WHERE g.account_number IN ('40100', '40200')
)"""
FEE_RATE = "0.025"  # the marketplace's fee on sales

EXPLORES: dict[str, Explore] = {
    e.name: e
    for e in (
        _explore(
            "gl_entries",
            "G/L Entries",
            "bc_general_ledger_entries",
            [
                _COMPANY,
                ("entry_number", "Entry No.", "dimension", "number", "t.entry_number"),
                ("posting_date", "Posting Date", "dimension", "date_date", "t.posting_date"),
                (
                    "posting_month",
                    "Posting Month",
                    "dimension",
                    "date_month",
                    "strftime(t.posting_date, '%Y-%m')",
                    "t.posting_date",
                ),
                ("account_number", "Account No.", "dimension", "string", "t.account_number"),
                ("document_type", "Document Type", "dimension", "string", "t.document_type"),
                ("document_number", "Document No.", "dimension", "string", "t.document_number"),
                ("description", "Description", "dimension", "string", "t.description"),
                ("debit_amount", "Debit Amount", "dimension", "number", "t.debit_amount"),
                ("credit_amount", "Credit Amount", "dimension", "number", "t.credit_amount"),
                ("total_debit", "Total Debit", "measure", "sum", "sum(t.debit_amount)"),
                ("total_credit", "Total Credit", "measure", "sum", "sum(t.credit_amount)"),
                ("net_amount", "Net Amount", "measure", "sum", "sum(t.debit_amount - t.credit_amount)"),
                ("count", "Count", "measure", "count", "count(*)"),
            ],
        ),
        _explore(
            "fee_allocation",
            "Marketplace fee allocation",
            _SALES_BY_AREA,
            [
                _COMPANY,
                ("posting_date", "Posting Date", "dimension", "date_date", "t.posting_date"),
                ("area", "Area", "dimension", "string", "t.area"),
                ("sales", "Sales", "measure", "sum", "sum(t.sales)"),
                ("fee_amount", "Marketplace Fee", "measure", "sum", f"sum(t.sales) * {FEE_RATE}"),
            ],
        ),
        _explore(
            "vendors",
            "Vendors",
            "bc_vendors",
            [
                _COMPANY,
                ("number", "Vendor No.", "dimension", "string", "t.number"),
                ("name", "Vendor Name", "dimension", "string", "t.display_name"),
                ("balance", "Balance", "dimension", "number", "t.balance"),
                ("total_balance", "Total Balance", "measure", "sum", "sum(t.balance)"),
                ("count", "Count", "measure", "count", "count(*)"),
            ],
        ),
        _explore(
            "purchase_invoices",
            "Purchase Invoices",
            "bc_purchase_invoices",
            [
                _COMPANY,
                ("number", "Invoice No.", "dimension", "string", "t.number"),
                ("vendor_number", "Vendor No.", "dimension", "string", "t.vendor_number"),
                ("vendor_name", "Vendor Name", "dimension", "string", "t.vendor_name"),
                ("invoice_date", "Invoice Date", "dimension", "date_date", "t.invoice_date"),
                (
                    "invoice_month",
                    "Invoice Month",
                    "dimension",
                    "date_month",
                    "strftime(t.invoice_date, '%Y-%m')",
                    "t.invoice_date",
                ),
                ("status", "Status", "dimension", "string", "t.status"),
                ("total_amount", "Total Amount Incl. Tax", "measure", "sum", "sum(t.total_amount_including_tax)"),
                ("count", "Count", "measure", "count", "count(*)"),
            ],
        ),
    )
}

# Saved Looks: (id, title, query). Their limits are what their authors saved.
LOOKS: dict[str, dict] = {
    "1": {
        "title": "Vendor balances",
        "query": {
            "model": MODEL,
            "view": "vendors",
            "fields": ["vendors.company_name", "vendors.number", "vendors.name", "vendors.total_balance"],
            "filters": {},
            "sorts": ["vendors.total_balance desc"],
            "limit": "500",
        },
    },
    "2": {
        "title": "Net G/L movement by month and account",
        "query": {
            "model": MODEL,
            "view": "gl_entries",
            "fields": [
                "gl_entries.company_name",
                "gl_entries.posting_month",
                "gl_entries.account_number",
                "gl_entries.net_amount",
            ],
            "filters": {},
            "sorts": ["gl_entries.posting_month", "gl_entries.account_number"],
            "limit": "5000",
        },
    },
    "3": {
        "title": "Large vendor balances (a custom filter)",
        "query": {
            "model": MODEL,
            "view": "vendors",
            "fields": ["vendors.company_name", "vendors.number", "vendors.total_balance"],
            "filters": {},
            "filter_expression": "${vendors.total_balance} > 10000",
            "sorts": ["vendors.total_balance desc"],
            "limit": "500",
        },
    },
}

DEFAULT_LIMIT = 5000


def explore_of(model: str | None, view: str | None) -> Explore:
    if model != MODEL:
        raise QueryError(404, f"Model '{model}' not found (the sandbox has '{MODEL}').", "model")
    explore = EXPLORES.get(view or "")
    if explore is None:
        raise QueryError(
            404, f"Explore '{view}' not found in model '{model}' (it has: {', '.join(sorted(EXPLORES))}).", "view"
        )
    return explore


def effective_limit(query_limit: str | int | None, override: str | int | None = None) -> int | None:
    """Rows to return: the override, else the query's limit, else 5,000; -1 means every row."""
    raw = override if override not in (None, "") else query_limit
    if raw in (None, ""):
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise QueryError(422, f"limit must be a number as a string, got {raw!r}", "limit") from None
    return None if value < 0 else value


def compile_query(query: dict, limit: int | None) -> tuple[str, list, list[Field]]:
    """SQL, its parameters, and the selected fields in order."""
    explore = explore_of(query.get("model"), query.get("view"))
    names = query.get("fields") or []
    if not names:
        raise QueryError(422, "A query needs at least one field.", "fields")
    fields = []
    for name in names:
        if name not in explore.fields:
            raise QueryError(422, f"Unknown field '{name}' in explore '{explore.name}'.", "fields")
        fields.append(explore.fields[name])
    where, having, params, having_params = [], [], [], []
    for name, expression in (query.get("filters") or {}).items():
        field = explore.fields.get(name)
        if field is None:
            raise QueryError(422, f"Unknown filter field '{name}' in explore '{explore.name}'.", "filters")
        sql, values = filter_sql(field, str(expression))
        (having if field.category == "measure" else where).append(sql)
        (having_params if field.category == "measure" else params).extend(values)
    select = ", ".join(f'{f.sql} AS "{f.name}"' for f in fields)
    text = f"SELECT {select} FROM {explore.from_clause}"
    if where:
        text += " WHERE " + " AND ".join(where)
    text += (
        " GROUP BY ALL"
        if any(f.category == "dimension" for f in fields) and any(f.category == "measure" for f in fields)
        else ""
    )
    if not any(f.category == "measure" for f in fields):
        text = text.replace("SELECT ", "SELECT DISTINCT ", 1)
    if having:
        text += " HAVING " + " AND ".join(having)
    text += " ORDER BY " + ", ".join(_order(explore, fields, query.get("sorts") or []))
    if limit is not None:
        text += f" LIMIT {int(limit)}"
    return text, params + having_params, fields


def _order(explore: Explore, fields: list[Field], sorts: list[str]) -> list[str]:
    selected = {f.name for f in fields}
    terms = []
    for sort in sorts:
        name, _, direction = sort.strip().partition(" ")
        if name not in selected:
            raise QueryError(422, f"Sort field '{name}' is not among the query's fields.", "sorts")
        terms.append(f'"{name}" {"DESC" if direction.strip().lower() == "desc" else "ASC"} NULLS LAST')
    if not terms:  # Looker's default: the first date dimension descending, else the first measure descending
        first = (
            next((f for f in fields if f.is_date), None)
            or next((f for f in fields if f.category == "measure"), None)
            or fields[0]
        )
        terms.append(f'"{first.name}" {"ASC" if first.category == "dimension" and not first.is_date else "DESC"}')
    # Ties broken by every field so equal queries return equal rows in equal order.
    terms += [f'"{f.name}" ASC NULLS LAST' for f in fields]
    return terms


# -- filter expressions ---------------------------------------------------------------------------

_DATE = r"\d{4}[/-]\d{2}[/-]\d{2}"
_NUMBER = re.compile(r"^\s*(>=|<=|!=|<>|>|<|=|NOT\s+)?\s*(-?\d+(?:\.\d+)?)\s*$", re.IGNORECASE)
_INTERVAL = re.compile(r"^\s*([\[(])\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*([\])])\s*$")


def filter_sql(field: Field, expression: str) -> tuple[str, list]:
    expression = expression.strip()
    if expression.upper() in ("NULL", "-NULL"):
        return (f"{field.sql} IS {'NOT ' if expression.startswith('-') else ''}NULL", [])
    if field.is_date:
        return _date_filter(field, expression)
    if field.is_numeric:
        return _number_filter(field, expression)
    return _string_filter(field, expression)


def _string_filter(field: Field, expression: str) -> tuple[str, list]:
    include, exclude, params_in, params_out = [], [], [], []
    for term in (t.strip() for t in re.split(r"(?<!\^),", expression)):
        if not term:
            continue
        negated = term.startswith("-")
        value = term[1:] if negated else term
        value = value.replace("^,", ",")
        if negated:  # Looker's "is not": nulls are not equal to the value either
            op = "NOT LIKE" if "%" in value else "!="
            exclude.append(f"({field.sql} {op} ? OR {field.sql} IS NULL)")
        else:
            include.append(f"{field.sql} {'LIKE' if '%' in value else '='} ?")
        (params_out if negated else params_in).append(value)
    parts = []
    if include:
        parts.append("(" + " OR ".join(include) + ")")
    if exclude:
        parts.append("(" + " AND ".join(exclude) + ")")
    if not parts:
        raise QueryError(400, f"Empty filter expression for {field.name}.", "filters")
    return " AND ".join(parts), params_in + params_out


def _number_filter(field: Field, expression: str) -> tuple[str, list]:
    alternatives, params = [], []
    for term in (t.strip() for t in expression.split(",")):
        interval = _INTERVAL.match(term)
        if interval:
            low_op = ">=" if interval.group(1) == "[" else ">"
            high_op = "<=" if interval.group(4) == "]" else "<"
            alternatives.append(f"({field.sql} {low_op} ? AND {field.sql} {high_op} ?)")
            params += [float(interval.group(2)), float(interval.group(3))]
            continue
        simple = _NUMBER.match(term)
        if not simple:
            raise QueryError(400, f"Invalid number filter '{expression}' for {field.name}.", "filters")
        op = (simple.group(1) or "=").strip().upper()
        op = {"NOT": "!=", "<>": "!="}.get(op, op)
        alternatives.append(f"{field.sql} {op} ?")
        params.append(float(simple.group(2)))
    return "(" + " OR ".join(alternatives) + ")", params


def _parse_date(text: str) -> datetime:
    text = text.strip().replace("-", "/")
    for fmt in ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%Y/%m", "%Y"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(text)


def _date_filter(field: Field, expression: str) -> tuple[str, list]:
    """`A to B` (B excluded), `after A` (A included), `before B`, a single day or month."""
    column = f"CAST({field.filter_column or field.sql} AS TIMESTAMP)"
    lowered = expression.lower()
    try:
        if " to " in lowered:
            start, end = re.split(r"\s+to\s+", expression, flags=re.IGNORECASE)
            return f"({column} >= ? AND {column} < ?)", [_parse_date(start), _parse_date(end)]
        if lowered.startswith("after "):
            return f"{column} >= ?", [_parse_date(expression[6:])]
        if lowered.startswith("before "):
            return f"{column} < ?", [_parse_date(expression[7:])]
        moment = _parse_date(expression)
        if re.fullmatch(r"\d{4}", expression.strip()):  # a year
            following = moment.replace(year=moment.year + 1)
        elif re.fullmatch(r"\d{4}[/-]\d{2}", expression.strip()):
            following = (moment.replace(day=28) + timedelta(days=4)).replace(day=1)
        elif re.fullmatch(_DATE, expression.strip()):
            following = moment + timedelta(days=1)
        else:
            return f"{column} = ?", [moment]
        return f"({column} >= ? AND {column} < ?)", [moment, following]
    except ValueError:
        raise QueryError(
            400,
            f"Invalid date filter '{expression}' for {field.name} (the sandbox understands "
            "'YYYY/MM/DD to YYYY/MM/DD', 'after …', 'before …', a day, a month or a year).",
            "filters",
        ) from None


def json_value(value):
    """A result cell as Looker's json format writes it."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return value  # numbers as they are: a Decimal is written with all its digits (exact_json)
