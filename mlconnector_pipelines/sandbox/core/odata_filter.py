"""OData $filter for the simulators.

`parse_filter` is the subset BC accepts and the connector uses: comparisons joined by `and`, as a
flat list a table can turn into key bounds. `parse_expression` is the full boolean grammar F&O
accepts (`or`, `not`, parentheses, enum literals, `*` wildcards), as a tree.
Literals follow BC: DateTimeOffset and Date unquoted, strings single-quoted, GUIDs bare.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
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


# -- the full boolean grammar (F&O): or, and, not, parentheses; enum literals; `*` wildcards -------------


@dataclass(frozen=True)
class Pattern:
    """`field eq '*text*'`: F&O's wildcard; `*` stands for any run of characters."""

    field: str
    op: str  # eq | ne
    regex: re.Pattern

    def matches(self, record: dict) -> bool:
        actual = record.get(self.field)
        hit = isinstance(actual, str) and self.regex.fullmatch(actual) is not None
        return hit if self.op == "eq" else not hit


@dataclass(frozen=True)
class Folded:
    """A string comparison under a case-insensitive collation (SQL Server's default, which F&O runs on)."""

    inner: Comparison

    def matches(self, record: dict) -> bool:
        actual = record.get(self.inner.field)
        return self.inner.matches({self.inner.field: actual.casefold()} if isinstance(actual, str) else record)


@dataclass(frozen=True)
class Junction:
    op: str  # and | or
    parts: tuple

    def matches(self, record: dict) -> bool:
        if self.op == "and":
            return all(p.matches(record) for p in self.parts)
        return any(p.matches(record) for p in self.parts)


@dataclass(frozen=True)
class Negation:
    inner: Any

    def matches(self, record: dict) -> bool:
        return not self.inner.matches(record)


_EXPR_TOKEN = re.compile(r"\s*([A-Za-z_][\w.]*'(?:[^']|'')*'|'(?:[^']|'')*'|\(|\)|[^\s()']+)")
_OP_NAMES = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual"}
_OP_NAMES |= {"lt": "LessThan", "le": "LessThanOrEqual"}


@dataclass
class Dialect:
    """What a service's $filter accepts beyond BC's subset."""

    type_name: str = "entity"  # the entity type named in errors
    fold_case: bool = False  # string comparisons ignore case
    wildcards: bool = False  # `eq '*x*'` matches as a pattern
    exact_numbers: bool = False  # numeric literals compare as Decimal


def parse_expression(text: str, field_types: dict[str, str], dialect: Dialect | None = None):
    """Parse a boolean $filter into a tree whose `.matches(record)` answers it.

    Field types that do not start with `Edm.` are enum types: their literals are written
    `Namespace.EnumType'Member'` and compare with eq/ne only."""
    tokens = _tokens(text)
    parser = _Parser(tokens, field_types, dialect or Dialect(), text)
    tree = parser.disjunction()
    if parser.position != len(tokens):
        raise FilterError(f"Syntax error at position {parser.offset()} in '{text}'.")
    return tree


def _tokens(text: str) -> list[str]:
    tokens, position = [], 0
    while position < len(text):
        match = _EXPR_TOKEN.match(text, position)
        if match is None:
            if text[position:].strip():
                raise FilterError(f"Syntax error at position {position} in '{text}'.")
            break
        tokens.append(match.group(1))
        position = match.end()
    if not tokens:
        raise FilterError("The $filter expression is empty.")
    return tokens


class _Parser:
    def __init__(self, tokens: list[str], field_types: dict[str, str], dialect: Dialect, text: str):
        self.tokens, self.field_types, self.dialect, self.text = tokens, field_types, dialect, text
        self.position = 0

    def offset(self) -> int:
        return len(" ".join(self.tokens[: self.position]))

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise FilterError(f"Syntax error: the expression ends early in '{self.text}'.")
        self.position += 1
        return token

    def disjunction(self):
        parts = [self.conjunction()]
        while (self.peek() or "").lower() == "or":
            self.position += 1
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Junction("or", tuple(parts))

    def conjunction(self):
        parts = [self.unary()]
        while (self.peek() or "").lower() == "and":
            self.position += 1
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else Junction("and", tuple(parts))

    def unary(self):
        token = self.take()
        if token.lower() == "not":
            return Negation(self.unary())
        if token == "(":
            inner = self.disjunction()
            if self.take() != ")":
                raise FilterError(f"Syntax error: ')' expected at position {self.offset()} in '{self.text}'.")
            return inner
        return self.comparison(token)

    def comparison(self, field: str):
        if self.peek() == "(":
            raise FilterError(f"Unknown function '{field}'.")
        op, literal = self.take().lower(), self.take()
        if field not in self.field_types:
            raise FilterError(f"Could not find a property named '{field}' on type '{self.dialect.type_name}'.")
        if op not in OPERATORS:
            raise FilterError(f"Syntax error: '{op}' is not a supported operator in '{self.text}'.")
        edm_type = self.field_types[field]
        if not edm_type.startswith("Edm."):
            return _enum_comparison(field, op, literal, edm_type)
        if edm_type == "Edm.String" and literal.startswith("'"):
            return self.string_comparison(field, op, literal)
        if self.dialect.exact_numbers and edm_type in ("Edm.Decimal", "Edm.Int32", "Edm.Int64") and literal != "null":
            if not _NUMBER.match(literal):
                raise FilterError(f"The literal '{literal}' is not a valid number.")
            return Comparison(field, op, "number", Decimal(literal))
        return _comparison(field, op, literal, edm_type)

    def string_comparison(self, field: str, op: str, literal: str):
        if not literal.endswith("'") or len(literal) < 2:
            raise FilterError(f"Syntax error: unterminated string literal {literal} in '{self.text}'.")
        value = literal[1:-1].replace("''", "'")
        if self.dialect.wildcards and "*" in value and op in ("eq", "ne"):
            flags = re.IGNORECASE if self.dialect.fold_case else 0
            regex = re.compile(".*".join(re.escape(part) for part in value.split("*")), flags | re.DOTALL)
            return Pattern(field, op, regex)
        if self.dialect.fold_case:
            return Folded(Comparison(field, op, "string", value.casefold()))
        return Comparison(field, op, "string", value)


def _enum_comparison(field: str, op: str, literal: str, enum_type: str) -> Comparison:
    if literal == "null":
        return Comparison(field, op, "null", None)
    prefix, _, rest = literal.partition("'")
    if not rest.endswith("'") or not prefix:
        found = "Edm.String" if literal.startswith("'") else _literal_type(literal)
        raise FilterError(
            "A binary operator with incompatible types was detected. Found operand types "
            f"'{enum_type}' and '{found}' for operator kind '{_OP_NAMES.get(op, op)}'."
        )
    if prefix != enum_type:
        raise FilterError(f"The enum type '{prefix}' does not match the type '{enum_type}' of property '{field}'.")
    if op not in ("eq", "ne"):
        raise FilterError(f"Only eq and ne compare enum values; found '{op}' on '{field}'.")
    return Comparison(field, op, "string", rest[:-1].replace("''", "'"))
