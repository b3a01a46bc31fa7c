"""The retrieval parameters of the contract-based API: $filter (OData v3 URI conventions), $select, $expand,
$top, $skip. There is no $orderby and no count (acumatica-facts §4): records come in the entity's key order.

$filter takes eq/ne/gt/ge/lt/le joined by and/or/not with parentheses, the functions substringof,
startswith and endswith, and OData v3 literals: 'text', numbers, true/false, null,
datetimeoffset'2026-03-02T10:00:00.000+00:00', datetime'2026-03-02T10:00:00' and date'2026-03-02'.
A '+' sent unencoded arrives as a space, as on a real server, and the literal is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from .contract import Entity

_TOKEN = re.compile(
    r"\s*(?:(?P<typed>[A-Za-z]+'(?:[^']|'')*')|(?P<text>'(?:[^']|'')*')|(?P<punct>[(),])"
    r"|(?P<number>-?\d+(?:\.\d+)?[mMdDlLfF]?(?![\w']))|(?P<word>[A-Za-z_$][\w/.$]*))"
)
_OPERATORS = {"eq", "ne", "gt", "ge", "lt", "le"}
_OP_KIND = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual"}
_OP_KIND |= {"lt": "LessThan", "le": "LessThanOrEqual"}
_EDM = {"S": "Edm.String", "D": "Edm.Decimal", "T": "Edm.DateTimeOffset", "B": "Edm.Boolean", "I": "Edm.Int32"}
_EDM |= {"H": "Edm.Int16", "L": "Edm.Int64", "G": "Edm.Guid"}
_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?)?(Z|[+-]\d{2}:\d{2})?$")


class QueryError(ValueError):
    pass


@dataclass(frozen=True)
class Literal:
    kind: str  # string | number | datetime | bool | null | guid
    value: Any

    @property
    def edm(self) -> str:
        return {"string": "Edm.String", "number": "Edm.Decimal", "datetime": "Edm.DateTimeOffset"}.get(
            self.kind, f"Edm.{self.kind.title()}"
        )


@dataclass(frozen=True)
class Comparison:
    field: str
    kind: str  # the field's type code
    op: str
    literal: Literal

    def matches(self, record: dict) -> bool:
        actual, expected = record.get(self.field), self.literal.value
        if self.literal.kind == "null" or actual is None:
            same = (actual is None) == (self.literal.kind == "null")
            return same if self.op == "eq" else not same if self.op == "ne" else False
        if self.kind == "S":
            actual, expected = actual.casefold(), expected.casefold()  # SQL Server's case-insensitive collation
        elif self.kind == "G":
            actual = str(actual).lower()
        elif self.kind == "T" and not isinstance(actual, datetime):
            actual = datetime(actual.year, actual.month, actual.day, tzinfo=UTC)
        return _compare(actual, self.op, expected)


@dataclass(frozen=True)
class TextFunction:
    name: str  # substringof | startswith | endswith
    field: str
    text: str

    def matches(self, record: dict) -> bool:
        actual = record.get(self.field)
        if not isinstance(actual, str):
            return False
        actual, text = actual.casefold(), self.text.casefold()
        if self.name == "substringof":
            return text in actual
        return actual.startswith(text) if self.name == "startswith" else actual.endswith(text)


@dataclass(frozen=True)
class Junction:
    op: str
    parts: tuple

    def matches(self, record: dict) -> bool:
        results = (part.matches(record) for part in self.parts)
        return all(results) if self.op == "and" else any(results)


@dataclass(frozen=True)
class Negation:
    inner: Any

    def matches(self, record: dict) -> bool:
        return not self.inner.matches(record)


def _compare(a, op: str, b) -> bool:
    try:
        return {"eq": a == b, "ne": a != b, "gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op]
    except TypeError:
        return False


@dataclass
class Query:
    filter: Any = None
    select: set[str] | None = None
    expand: set[str] = field(default_factory=set)
    top: int | None = None
    skip: int = 0


def parse_query(params, entity: Entity) -> Query:
    query = Query()
    if params.get("$filter"):
        query.filter = parse_filter(params["$filter"], entity)
    if params.get("$select"):
        query.select = {part.strip() for part in params["$select"].split(",") if part.strip()}
    if params.get("$expand"):
        query.expand = {part.strip() for part in params["$expand"].split(",") if part.strip()}
    query.top = _count(params, "$top")
    query.skip = _count(params, "$skip") or 0
    return query


def _count(params, name: str) -> int | None:
    text = params.get(name)
    if text is None or text == "":
        return None
    if not text.strip().isdigit():
        raise QueryError(f"The value '{text}' of the {name} parameter is not a non-negative integer.")
    return int(text)


def parse_filter(text: str, entity: Entity):
    tokens = _tokens(text)
    parser = _Parser(tokens, entity, text)
    tree = parser.disjunction()
    if parser.position != len(tokens):
        raise QueryError(f"Syntax error at position {parser.offset()} in '{text}'.")
    return tree


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            if not text[position:].strip():
                break
            raise QueryError(f"Syntax error at position {position} in '{text}'.")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        position = match.end()
    if not tokens:
        raise QueryError("The $filter expression is empty.")
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], entity: Entity, text: str):
        self.tokens, self.entity, self.text = tokens, entity, text
        self.position = 0

    def offset(self) -> int:
        return len(" ".join(value for _, value in self.tokens[: self.position]))

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise QueryError(f"Syntax error: the expression ends early in '{self.text}'.")
        self.position += 1
        return token

    def expect(self, value: str) -> None:
        if self.take()[1] != value:
            raise QueryError(f"Syntax error: '{value}' expected at position {self.offset()} in '{self.text}'.")

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "word" and token[1].lower() == word:
            self.position += 1
            return True
        return False

    def disjunction(self):
        parts = [self.conjunction()]
        while self.keyword("or"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Junction("or", tuple(parts))

    def conjunction(self):
        parts = [self.unary()]
        while self.keyword("and"):
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else Junction("and", tuple(parts))

    def unary(self):
        if self.keyword("not"):
            return Negation(self.unary())
        kind, value = self.take()
        if value == "(":
            inner = self.disjunction()
            self.expect(")")
            return inner
        if kind != "word":
            raise QueryError(f"Syntax error at position {self.offset()} in '{self.text}'.")
        if value.lower() in ("substringof", "startswith", "endswith") and (self.peek() or ("", ""))[1] == "(":
            return self.function(value.lower())
        return self.comparison(value)

    def function(self, name: str):
        self.expect("(")
        first, _ = self.operand(), self.expect(",")
        second = self.operand()
        self.expect(")")
        text, target = (first, second) if name == "substringof" else (second, first)
        if not isinstance(text, Literal) or text.kind != "string" or not isinstance(target, str):
            raise QueryError(f"The function {name} takes a field and a string literal in '{self.text}'.")
        node = TextFunction(name, target, text.value)
        if self.keyword("eq"):  # `startswith(X,'a') eq true`
            literal = self.operand()
            if not isinstance(literal, Literal) or literal.kind != "bool":
                raise QueryError(f"Syntax error: true or false expected in '{self.text}'.")
            return node if literal.value else Negation(node)
        return node

    def operand(self):
        kind, value = self.take()
        if kind == "word" and value.lower() not in ("true", "false", "null"):
            return self.field(value)
        return _literal(kind, value)

    def field(self, name: str) -> str:
        if "/" in name:
            head = name.split("/")[0]
            if head in self.entity.details:
                raise QueryError("Filtering on detail entities is not supported.")
        if name not in self.entity.scalars:
            raise QueryError(f"Could not find a property named '{name}' on type '{self.entity.name}'.")
        return name

    def comparison(self, name: str):
        field_name = self.field(name)
        op = self.take()[1].lower()
        if op not in _OPERATORS:
            raise QueryError(f"Syntax error: '{op}' is not a supported operator in '{self.text}'.")
        literal = self.operand()
        if not isinstance(literal, Literal):
            raise QueryError(f"Comparing two fields is not supported in '{self.text}'.")
        kind = self.entity.scalars[field_name]
        return Comparison(field_name, kind, op, _typed(literal, kind, op))


def _literal(kind: str, value: str) -> Literal:
    if kind == "text":
        return Literal("string", value[1:-1].replace("''", "'"))
    if kind == "number":
        return Literal("number", Decimal(value.rstrip("mMdDlLfF")))
    if kind == "typed":
        prefix, _, rest = value.partition("'")
        body = rest[:-1].replace("''", "'")
        prefix = prefix.lower()
        if prefix in ("datetimeoffset", "datetime", "date"):
            return Literal("datetime", _moment(prefix, body))
        if prefix == "guid":
            return Literal("guid", body.lower())
        raise QueryError(f"Unrecognized literal prefix '{prefix}' in {value}.")
    if kind == "word" and value.lower() in ("true", "false"):
        return Literal("bool", value.lower() == "true")
    if kind == "word" and value.lower() == "null":
        return Literal("null", None)
    raise QueryError(f"Syntax error: unexpected '{value}'.")


def _moment(prefix: str, body: str) -> datetime:
    if not _STAMP.match(body) or (
        prefix == "datetimeoffset" and "T" in body and not re.search(r"(Z|[+-]\d\d:\d\d)$", body)
    ):
        raise QueryError(f"The literal {prefix}'{body}' is not a valid {prefix} value.")
    moment = datetime.fromisoformat(body.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _typed(literal: Literal, kind: str, op: str) -> Literal:
    """The literal as the field's type compares, or the OData type error."""
    if literal.kind == "null":
        return literal
    wanted = {"S": "string", "T": "datetime", "B": "bool", "G": "guid"}.get(kind, "number")
    if kind == "G" and literal.kind == "string":
        return Literal("guid", literal.value.lower())
    if literal.kind != wanted:
        raise QueryError(
            "A binary operator with incompatible types was detected. Found operand types "
            f"'{_EDM[kind]}' and '{literal.edm}' for operator kind '{_OP_KIND[op]}'."
        )
    if wanted == "number" and kind in "IHL":
        try:
            return Literal("number", int(literal.value))
        except (InvalidOperation, ValueError):
            raise QueryError(f"The literal {literal.value} is not an integer.") from None
    return literal
