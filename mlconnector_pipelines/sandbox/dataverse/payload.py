"""A write's JSON body as column values and lookup binds, refused as the Web API refuses it.

Numbers are parsed as Decimal (no float on the way). Lookups are written only through their
navigation property, `<navigation>@odata.bind: "/<entityset>(<guid>)"`.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal

from .errors import DataverseError, invalid_property, payload, undeclared_navigation
from .tables import BY_LOGICAL, REFERENCE_SETS, Table

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_BIND = re.compile(r"(?:^|/)(\w+)\(\{?([0-9a-fA-F-]{36})\}?\)$")


def parse_json(body: bytes, entity_set: str):
    try:
        return json.loads(body or b"{}", parse_float=Decimal)
    except ValueError as exc:
        raise payload(entity_set, f"Invalid JSON. {exc}") from None


def entity_set_of(logical: str) -> str:
    return BY_LOGICAL[logical].entity_set if logical in BY_LOGICAL else REFERENCE_SETS[logical]


def read(table: Table, data, creating: bool) -> tuple[dict, dict]:
    """(column values, {lookup attribute: (target logical name, id or None)})."""
    if not isinstance(data, dict):
        raise payload(table.entity_set, "A JSON object was expected.")
    values, binds = {}, {}
    for name, value in data.items():
        if name.endswith("@odata.bind"):
            navigation = name[: -len("@odata.bind")]
            lookup = table.navigation.get(navigation)
            if lookup is None:
                raise undeclared_navigation(table.entity_set, navigation)
            binds[lookup.attribute] = bind(table, navigation, value)
        elif name.startswith("@") or "@" in name:
            continue  # instance annotations (@odata.type, @odata.etag)
        elif name in table.types:
            if name == table.key and not creating:
                continue
            values[name] = convert(table, name, value)
        elif name in table.properties and name.startswith("_") and name.endswith("_value"):
            raise DataverseError(
                400,
                "0x80060888",
                "CRM do not support direct update of Entity Reference properties, Use Navigation properties instead.",
            )
        elif name in table.properties:
            continue  # a money column's _base twin: computed
        else:
            raise invalid_property(name, table.type_name)
    return values, binds


def bind(table: Table, navigation: str, value) -> tuple[str, str | None]:
    lookup = table.navigation[navigation]
    target = lookup.target_of(navigation)
    if value is None:
        return target, None
    match = _BIND.search(str(value)) if isinstance(value, str) else None
    if match is None or match.group(1) != entity_set_of(target):
        raise payload(
            table.entity_set,
            f"The value '{value}' of '{navigation}@odata.bind' is not a URL of a {target} "
            f"(/{entity_set_of(target)}(<id>)).",
        )
    return target, match.group(2).lower()


def _string(value):
    return value if isinstance(value, str) else None


def _guid(value):
    return value.lower() if isinstance(value, str) and GUID.match(value) else None


def _integer(value):
    if isinstance(value, bool) or not isinstance(value, int | Decimal) or value != int(value):
        return None
    return int(value)


def _boolean(value):
    return value if isinstance(value, bool) else None


def _decimal(value):
    return None if isinstance(value, bool) or not isinstance(value, int | Decimal) else Decimal(value)


def _date(value):
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        return None


def _moment(value):
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_CONVERTERS = {
    "Edm.String": _string,
    "Edm.Guid": _guid,
    "Edm.Int32": _integer,
    "Edm.Int64": _integer,
    "Edm.Boolean": _boolean,
    "Edm.Decimal": _decimal,
    "Edm.Date": _date,
    "Edm.DateTimeOffset": _moment,
}


def convert(table: Table, name: str, value):
    """A JSON value as the column's type; one that does not convert is refused as ODataLib refuses it."""
    if value is None:
        return None
    edm = table.types[name]
    converted = _CONVERTERS[edm](value)
    if converted is None:
        shown = value if isinstance(value, str) else json.dumps(value, default=str)
        raise payload(table.entity_set, f"Cannot convert the literal '{shown}' to the expected type '{edm}'.")
    return converted
