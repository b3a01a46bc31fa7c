"""Rows as the Web API answers them: `@odata.etag`, selected properties, lookups as `_x_value`, annotations.

Money and decimals are Decimals written with every stored digit; a money column's `_base` twin is
the amount in the organization's base currency (divided by the record currency's exchange rate).
With `Prefer: odata.include-annotations` a lookup carries its target's name, navigation property
and logical name, and option sets and money their formatted values (money in its currency's symbol
and precision).
"""

from __future__ import annotations

import re
from decimal import Decimal
from fnmatch import fnmatchcase

from .pricing import money
from .query import Expand, link_query, run
from .tables import TABLES, Table

FORMATTED = "OData.Community.Display.V1.FormattedValue"
NAVIGATION = "Microsoft.Dynamics.CRM.associatednavigationproperty"
LOGICAL_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"


def parse_prefer(values: list[str]) -> dict[str, str]:
    """`Prefer` preferences by name (several headers or comma-separated ones); a bare preference maps to ''."""
    prefs = {}
    for header in values:
        for part in re.findall(r'(?:[^,"]|"[^"]*")+', header):
            name, _, value = part.strip().partition("=")
            if name:
                prefs[name.strip().lower()] = value.strip()
    return prefs


class Annotations:
    """The annotation terms `odata.include-annotations` asked for (`*`, names, `Prefix.*` patterns)."""

    def __init__(self, value: str | None):
        self.patterns = [p.strip() for p in (value or "").strip('"').split(",") if p.strip()]

    def wants(self, term: str) -> bool:
        return any(fnmatchcase(term, p) for p in self.patterns)

    @property
    def applied(self) -> str | None:
        return f'odata.include-annotations="{",".join(self.patterns)}"' if self.patterns else None


def _shortest(value: Decimal) -> Decimal | int:
    """`100.0000000000` as `100` (a JSON integer), `0.5000000000` as `0.5`: the same number, fewest digits."""
    value = value.normalize()
    return int(value) if value == value.to_integral_value() else value


def formatted_money(value: Decimal, symbol: str = "$", precision: int = 2) -> str:
    shown = f"{symbol}{abs(value):,.{precision}f}"
    return f"-{shown}" if value < 0 else shown


class Renderer:
    def __init__(self, model, base: str, annotations: Annotations):
        self.model, self.base, self.annotations = model, base, annotations

    def row(self, table: Table, row: dict, select: list[str] | None, expand: list[Expand] = (), etag=True) -> dict:
        out = {"@odata.etag": f'W/"{row["versionnumber"]}"'} if etag else {}
        names = list(select) if select else list(table.properties)
        if table.key not in names:
            names.append(table.key)
        shortest = self.model.settings.amounts_written == "shortest"
        for name in names:
            out[name] = self._value(table, row, name)
            self._annotate(out, table, row, name)
            if shortest and isinstance(out[name], Decimal):
                out[name] = _shortest(out[name])
        for item in expand:
            self._expand(out, table, row, item)
        return out

    def _value(self, table: Table, row: dict, name: str):
        if name.endswith("_base") and name[:-5] in table.money:
            return self._in_base(row, row.get(name[:-5]))
        if name == "authvalue":  # IsValidForRead is false: never answered
            return None
        return row.get(name)

    def _in_base(self, row: dict, value: Decimal | None) -> Decimal | None:
        """A `_base` twin: the amount divided by its currency's exchange rate (units per base unit)."""
        currency = self.model.find("transactioncurrency", row.get("_transactioncurrencyid_value"))
        rate = currency.get("exchangerate") if currency else None
        if value is None or not rate or rate == 1:
            return value
        return money(value / rate)

    def _annotate(self, out: dict, table: Table, row: dict, name: str) -> None:
        value = out[name]
        if value is None or not self.annotations.patterns:
            return
        lookup = next((lk for lk in table.lookup.values() if lk.property == name), None)
        if lookup is not None:
            target = row["@lookup"].get(lookup.attribute)
            label = self.model.name_of(target, value)
            if label is not None and self.annotations.wants(FORMATTED):
                out[f"{name}@{FORMATTED}"] = label
            if self.annotations.wants(NAVIGATION) and lookup.navigation_to(target):
                out[f"{name}@{NAVIGATION}"] = lookup.navigation_to(target)
            if self.annotations.wants(LOGICAL_NAME):
                out[f"{name}@{LOGICAL_NAME}"] = target
        elif self.annotations.wants(FORMATTED):
            label = None
            if name == "statecode":
                label = table.states.get(value)
            elif name == "statuscode":
                label = table.statuses.get(value, (None,))[0]
            elif isinstance(value, bool):
                label = "Yes" if value else "No"
            elif isinstance(value, Decimal) and (name in table.money or name[:-5] in table.money):
                label = formatted_money(value, *self._currency(row, base=name not in table.money))
            if label is not None:
                out[f"{name}@{FORMATTED}"] = label

    def _currency(self, row: dict, base: bool) -> tuple[str, int]:
        """The symbol and precision a money value is shown with: the record's currency (a `_base` twin: the base's)."""
        key = self.model.reference.currency if base else row.get("_transactioncurrencyid_value")
        currency = self.model.find("transactioncurrency", key)
        if currency is None:
            return "$", 2
        precision = currency.get("currencyprecision")
        return currency.get("currencysymbol") or "", 2 if precision is None else precision

    def _expand(self, out: dict, table: Table, row: dict, item: Expand) -> None:
        if item.navigation in table.lines:
            lines = table.lines[item.navigation]
            child = TABLES[lines.child_set]
            related = [
                r
                for r in self.model.tables[child.entity_set].values()
                if r.get(f"_{lines.child_attribute}_value") == row[table.key]
            ]
            size = item.top if item.top is not None else 5000
            page = run(related, item.filter, item.orderby, child.key, size, None)
            out[item.navigation] = [self.row(child, r, item.select) for r in page.rows]
            options = {}
            for part in item.text.split(";"):
                name, _, value = part.partition("=")
                if name.strip():
                    options[name.strip()] = value
            link = f"{self.base}/{table.entity_set}({row[table.key]})/{item.navigation}"
            out[f"{item.navigation}@odata.nextLink"] = link + (f"?{link_query(options)}" if options else "")
            return
        lookup = table.navigation[item.navigation]
        target_logical = lookup.target_of(item.navigation)
        target = self.model.find(target_logical, row.get(lookup.property))
        if row["@lookup"].get(lookup.attribute) != target_logical:
            target = None
        target_table = next(t for t in TABLES.values() if t.logical == target_logical)
        out[item.navigation] = self.row(target_table, target, item.select, etag=False) if target else None

    def context(self, table: Table, select: list[str] | None, expand: list[Expand] = (), suffix: str = "") -> str:
        items = list(select or [])
        for item in expand:
            items.append(f"{item.navigation}({','.join(item.select or [])})")
        shape = f"({','.join(items)})" if items else ""
        return f"{self.base}/$metadata#{table.entity_set}{shape}{suffix}"
