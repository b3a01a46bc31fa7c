"""Acumatica's JSON on the wire: every field wrapped as {"value": …}, records with system fields, HttpError bodies.

Amounts stay Decimal from the request body to the answer (exact_json writes every digit). Date-times
are written as .NET's `yyyy-MM-ddTHH:mm:ss.FFFzzz` writes them: no trailing zeros in the fraction,
none at all on a whole second, the offset as +00:00.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from starlette.responses import Response

from ..core.exact_json import dumps
from .contract import MONEY, Entity, detail

SYSTEM_FIELDS = ("id", "rowNumber", "note", "custom", "_links", "files", "error", "delete")
_MODELS = {"S": "StringValue", "D": "DecimalValue", "T": "DateTimeValue", "B": "BooleanValue", "I": "IntValue"}
_MODELS |= {"H": "ShortValue", "L": "LongValue", "G": "GuidValue"}
CENT = Decimal("0.01")


class WireError(ValueError):
    """A request body the API cannot bind (400)."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path, self.message = path, message


def error_body(message: str, exception_message: str | None = None, exception_type: str | None = None) -> dict:
    """ASP.NET Web API's HttpError, which the contract-based API answers errors with."""
    body = {"message": message}
    if exception_message is not None:
        body |= {"exceptionMessage": exception_message, "exceptionType": exception_type or "PX.Data.PXException"}
        body["stackTrace"] = None
    return body


def error_response(status: int, message: str, exception_message: str | None = None, **kw) -> Response:
    headers = kw.pop("headers", None)
    body = error_body(message, exception_message, kw.pop("exception_type", None))
    return json(body, status, headers)


def json(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(dumps(body), status_code=status, media_type="application/json; charset=utf-8", headers=headers)


# -- values ------------------------------------------------------------------------------------------


def format_stamp(moment: datetime | date) -> str:
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{moment.microsecond // 1000:03d}".rstrip("0")
    return f"{text}.{fraction}+00:00" if fraction else f"{text}+00:00"


def parse_stamp(text: str) -> datetime:
    """An ISO date or date-time; without an offset it is the server's time, which here is UTC."""
    text = text.strip()
    if len(text) == 10:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def site_date(text: str, site_offset: timedelta) -> date:
    """The date a date-only field takes: the one named, or, sent with an offset, the site's date then."""
    text = text.strip()
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        return moment.date()
    return moment.astimezone(timezone(site_offset)).date()


def format_site_date(day: date, site_offset: timedelta) -> str:
    """A date-only field as a site in another time zone writes it: midnight there, with its offset."""
    day = day.date() if isinstance(day, datetime) else day
    return datetime(day.year, day.month, day.day, tzinfo=timezone(site_offset)).isoformat()


def to_wire(kind: str, value, *, date_offset: timedelta | None = None):
    """`date_offset`: the value is a date-only field written at the site's offset (else midnight UTC)."""
    if value is None:
        return None
    if kind == "T":
        return format_stamp(value) if date_offset is None else format_site_date(value, date_offset)
    return value


def from_wire(kind: str, value, path: str, *, date_only: bool = False, site_offset: timedelta = timedelta(0)):
    """A request's value as the model holds it, converted as Json.NET converts into the typed value."""
    if value is None:
        return None
    model = _MODELS[kind]
    try:
        if kind == "S":
            if isinstance(value, (dict, list)):
                raise TypeError
            return value if isinstance(value, str) else _text(value)
        if kind == "B":
            return _boolean(value)
        if kind == "D":
            if isinstance(value, bool):
                raise TypeError
            number = Decimal(value) if not isinstance(value, Decimal) else value
            if not number.is_finite():
                raise ValueError
            return number
        if kind in "IHL":
            if isinstance(value, bool) or Decimal(str(value)) != int(Decimal(str(value))):
                raise ValueError
            return int(Decimal(str(value)))
        if kind == "T":
            return site_date(str(value), site_offset) if date_only else parse_stamp(str(value))
        return str(value)
    except (TypeError, ValueError, InvalidOperation, ArithmeticError):
        raise WireError(path, f"Error converting value {_quoted(value)} to type '{model}'. Path '{path}'.") from None


def round_money(field: str, value):
    return value.quantize(CENT, rounding=ROUND_HALF_UP) if field in MONEY and isinstance(value, Decimal) else value


def _text(value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def _boolean(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, (int, Decimal)) and value in (0, 1):
        return bool(value)
    raise ValueError(value)


def _quoted(value) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


# -- request bodies ----------------------------------------------------------------------------------


def read_record(data, entity: Entity, version: str, path: str = "", site_offset: timedelta = timedelta(0)) -> dict:
    """A record in a request body: {"id", "note", "delete", fields…, detail lists…} with plain values.

    A field must be an object {"value": …}; a bare value is a binding error (400). Names the
    contract does not have are ignored, as the binder ignores them."""
    if not isinstance(data, dict):
        raise WireError(path or "entity", f"Cannot bind {type(data).__name__} to an entity. Path '{path}'.")
    record: dict = {}
    for name, value in data.items():
        where = f"{path}.{name}" if path else name
        if name in ("id", "rowNumber", "delete"):
            record[name] = value
        elif name == "note":
            record["note"] = _wrapped(value, "S", where, False)
        elif name in entity.details and value is not None:
            if not isinstance(value, list):
                raise WireError(where, f"Cannot deserialize the current JSON object into a list. Path '{where}'.")
            child = detail(version, entity.details[name])
            record[name] = [
                read_record(line, child, version, f"{where}[{i}]", site_offset) for i, line in enumerate(value)
            ]
        elif name in entity.scalars:
            record[name] = _wrapped(value, entity.scalars[name], where, entity.is_date(name), site_offset)
    return record


def _wrapped(value, kind: str, path: str, date_only: bool, site_offset: timedelta = timedelta(0)):
    if not isinstance(value, dict):
        raise WireError(
            path,
            f"Error converting value {_quoted(value)} to type 'PX.Api.ContractBased.Models.{_MODELS[kind]}'. "
            f"Path '{path}'.",
        )
    if "value" not in value:
        return _ABSENT
    return from_wire(kind, value["value"], f"{path}.value", date_only=date_only, site_offset=site_offset)


class _Absent:
    """`{}`: the field is named without a value, so it is left as it is."""

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


def given(record: dict) -> dict:
    """The record's fields that carry a value (drops `{}`)."""
    return {k: v for k, v in record.items() if v is not _ABSENT}


# -- answers -----------------------------------------------------------------------------------------


def render(
    record: dict,
    entity: Entity,
    version: str,
    row: int,
    self_link: str | None,
    select: set[str] | None = None,
    expand: set[str] = frozenset(),
    date_offset: timedelta | None = None,
) -> dict:
    """A stored record as the API answers it: system fields, every selected field wrapped (`{}` when empty),
    detail lists only when expanded; date-only fields at `date_offset` when given (dialect
    `dates_at_site_offset`)."""
    body: dict = {"id": record["id"], "rowNumber": row, "note": {"value": record.get("note") or ""}}
    top = None if select is None else {s.split("/")[0] for s in select}
    for name in sorted(entity.scalars, key=str.lower):
        if top is None or name in top:
            offset = date_offset if entity.is_date(name) else None
            value = to_wire(entity.fields[name], record.get(name), date_offset=offset)
            body[name] = {} if value is None else {"value": value}
    for name, child in entity.details.items():
        if name not in expand:
            continue
        inner = None if select is None else {s.split("/", 1)[1] for s in select if s.startswith(f"{name}/")} or None
        lines = record.get(name) or []
        body[name] = [
            render(line, detail(version, child), version, i, None, inner, date_offset=date_offset)
            for i, line in enumerate(lines, start=1)
        ]
    for name, kind in entity.fields.items():
        if kind.startswith("<") and name in expand:
            body[name] = {}
    body["custom"] = {}
    if self_link is not None:
        body["_links"] = {"self": self_link, "files:put": f"{self_link}/files/{{filename}}"}
    return body


def attach_errors(body: dict, problems, summary: str) -> dict:
    """The 422 answer: the record with `error` on each offending field (and line) and on the record."""
    for field, message in problems.fields.items():
        body.setdefault(field, {})["error"] = message
    for index, fields in problems.lines.items():
        lines = body.get("Details") or []
        if index < len(lines):
            for field, message in fields.items():
                lines[index].setdefault(field, {})["error"] = message
    body["error"] = " ".join([summary, *problems.record]) if problems.record else summary
    return body
