"""The subset of OData $filter that BC accepts and the connector uses: comparisons joined by `and`.

Literals follow BC: DateTimeOffset and Date unquoted, strings single-quoted, GUIDs bare.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

OPERATORS = {"eq", "ne", "gt", "ge", "lt", "le"}
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TOKEN = re.compile(r"\s*('(?:[^']|'')*'|\(|\)|[^\s()]+)")


class FilterError(ValueError):
    pass


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str
    kind: str  # datetime | date | number | string | guid | bool | null
    value: Any

    def matches(self, record: dict) -> bool:
        actual = record.get(self.field)
        if self.kind == "null":
            return (actual is None) == (self.op == "eq")
        if actual is None:
            return self.op == "ne"
        if self.kind == "datetime":
            actual = normalize_datetime(actual)
        return _compare(actual, self.op, self.value)


def _compare(a: Any, op: str, b: Any) -> bool:
    return {"eq": a == b, "ne": a != b, "gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op]


def normalize_datetime(text: str) -> str:
    """Canonical `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC, which sorts as time does."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_filter(text: str, field_types: dict[str, str]) -> list[Comparison]:
    """Parse `a op x and b op y ...`; `field_types` maps field -> Edm type for type checks."""
    tokens = [t for t in _TOKEN.findall(text) if t]
    if not tokens:
        raise FilterError("The $filter expression is empty.")
    comparisons: list[Comparison] = []
    position = 0
    while True:
        if position + 3 > len(tokens):
            raise FilterError(f"Syntax error at position {len(' '.join(tokens[:position]))} in '{text}'.")
        field, op, literal = tokens[position : position + 3]
        op = op.lower()
        if field not in field_types:
            raise FilterError(f"Could not find a property named '{field}' on type 'Microsoft.NAV.entity'.")
        if op not in OPERATORS:
            raise FilterError(f"Syntax error: '{op}' is not a supported operator in '{text}'.")
        comparisons.append(_comparison(field, op, literal, field_types[field]))
        position += 3
        if position == len(tokens):
            return comparisons
        if tokens[position].lower() != "and":
            raise FilterError(f"Only 'and' may join conditions here; found '{tokens[position]}'.")
        position += 1


def _comparison(field: str, op: str, literal: str, edm_type: str) -> Comparison:
    if literal == "null":
        return Comparison(field, op, "null", None)
    if edm_type == "Edm.DateTimeOffset":
        if not _DATETIME.match(literal):
            raise FilterError(
                "A binary operator with incompatible types was detected. Found operand types "
                f"'Edm.DateTimeOffset' and '{_literal_type(literal)}' for operator kind '{op}'."
            )
        return Comparison(field, op, "datetime", normalize_datetime(literal))
    if edm_type == "Edm.Date":
        if not _DATE.match(literal):
            raise FilterError(f"The literal '{literal}' is not a valid Edm.Date.")
        return Comparison(field, op, "date", literal)
    if edm_type in ("Edm.Decimal", "Edm.Int32", "Edm.Int64", "Edm.Double"):
        if not _NUMBER.match(literal):
            raise FilterError(f"The literal '{literal}' is not a valid number.")
        return Comparison(field, op, "number", float(literal))
    if edm_type == "Edm.Boolean":
        if literal not in ("true", "false"):
            raise FilterError(f"The literal '{literal}' is not a valid Edm.Boolean.")
        return Comparison(field, op, "bool", literal == "true")
    if edm_type == "Edm.Guid":
        if not _GUID.match(literal):
            raise FilterError(f"The literal '{literal}' is not a valid Edm.Guid.")
        return Comparison(field, op, "guid", literal.lower())
    if not (literal.startswith("'") and literal.endswith("'")):
        raise FilterError(
            f"A binary operator with incompatible types was detected: '{literal}' is not a string literal."
        )
    return Comparison(field, op, "string", literal[1:-1].replace("''", "'"))


def _literal_type(literal: str) -> str:
    if literal.startswith("'"):
        return "Edm.String"
    if _DATE.match(literal):
        return "Edm.Date"
    return "Edm.Unknown"
