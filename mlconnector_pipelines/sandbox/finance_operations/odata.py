"""F&O's OData answers under /data/, for one request at a time (a plain request or one part of a $batch).

Requests and answers are plain values here (no web framework), so `$batch` runs its parts through
the same code as single requests. Errors take F&O's shape (fo-facts §8): a write the business
logic refuses is a 400 AxODataWriteException whose inner message is the Infolog; a query the
OData layer refuses is a 400 ODataException.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import quote, urlencode, urlsplit

from ..core.exact_json import dumps
from ..core.odata_filter import FilterError
from . import Dialect, FinanceOperationsSettings
from .entities import ENUMS, NAMESPACE, EntitySet
from .metadata import metadata_document
from .models import FinanceOperationsModel, NotFound, WriteFailed, fold
from .query import parse_query, run

JSON_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"
ODATA_EXCEPTION = "Microsoft.OData.ODataException"
WRITE_EXCEPTION = "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException"
_PATH = re.compile(r"^(?P<set>[A-Za-z_]\w*)(?:\((?P<key>.*)\))?(?:/(?P<tail>\$count|[A-Za-z_]\w*))?/?$")
_KEY_PART = re.compile(r"\s*(?:(?P<name>\w+)\s*=\s*)?(?P<value>'(?:[^']|'')*'|[^,']+|[\w.]+'(?:[^']|'')*')\s*(?:,|$)")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?[mMdD]?$")
UPDATE_METHODS = ("PATCH", "PUT", "MERGE")


@dataclass
class ODataRequest:
    method: str
    path: str  # below the service root, percent-decoded: `LedgerJournalLines(dataAreaId='usrt',...)`
    params: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    root: str  # the absolute service root, `https://host/data`


@dataclass
class ODataResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str | None = JSON_TYPE


class ODataError(Exception):
    def __init__(self, status: int, inner: str, kind: str = "", message: str = "An error has occurred."):
        super().__init__(inner)
        self.status, self.inner, self.kind, self.message = status, inner, kind, message


def error_response(status: int, inner: str, kind: str = "", message: str = "An error has occurred.") -> ODataResponse:
    body = {"error": {"code": "", "message": message, "innererror": {"message": inner, "type": kind, "stacktrace": ""}}}
    return ODataResponse(status, dumps(body), {"OData-Version": "4.0"})


def not_found(segment: str) -> ODataError:
    return ODataError(404, f"Resource not found for the segment '{segment}'.")


# -- values on the wire ------------------------------------------------------------------------------


def to_stamp(value: str) -> str:
    """A date field's answer: F&O exposes dates as DateTimeOffset at 12:00 UTC; a bare date is taken too."""
    text = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = date.fromisoformat(text)
    else:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError(text)
        day = moment.astimezone(UTC).date()
    return f"{day.isoformat()}T12:00:00Z"


def _cannot_convert(value, edm_type: str) -> ODataError:
    return ODataError(400, f"Cannot convert the literal '{value}' to the expected type '{edm_type}'.", ODATA_EXCEPTION)


def convert(entity: EntitySet, name: str, value):
    """A body value as the model holds it: Decimal amounts, canonical date stamps, enum member names."""
    kind, edm_type = entity.fields[name], entity.edm_type(name)
    if value is None:
        if kind in ("Edm.Decimal", "Edm.Int32", "Edm.DateTimeOffset"):
            raise ODataError(
                400,
                f"A null value was found for the property named '{name}', which has the expected type "
                f"'{edm_type}[Nullable=False]'. The expected type '{edm_type}[Nullable=False]' does not allow "
                "null values.",
                ODATA_EXCEPTION,
            )
        return None
    if kind == "Edm.String":
        if not isinstance(value, str):
            raise _cannot_convert(value, edm_type)
        return value
    if kind in ("Edm.Decimal", "Edm.Int32"):
        return _number(value, edm_type, integral=kind == "Edm.Int32")
    if kind == "Edm.DateTimeOffset":
        try:
            return to_stamp(value)
        except (ValueError, TypeError, AttributeError):
            raise _cannot_convert(value, edm_type) from None
    members = {m.casefold(): m for m in ENUMS[kind]}
    if not isinstance(value, str) or value.casefold() not in members:
        raise _cannot_convert(value, edm_type)
    return members[value.casefold()]


def _number(value, edm_type: str, integral: bool):
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise _cannot_convert(value, edm_type)
    try:
        number = Decimal(value) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise _cannot_convert(value, edm_type) from None
    if not number.is_finite() or (integral and number != number.to_integral_value()):
        raise _cannot_convert(value, edm_type)
    return int(number) if integral else number


def read_body(entity: EntitySet, body: bytes) -> dict:
    try:
        data = json.loads(body or b"{}", parse_float=Decimal)
    except ValueError as exc:
        raise ODataError(400, f"The request body is not valid JSON: {exc}.", ODATA_EXCEPTION) from None
    if not isinstance(data, dict):
        raise ODataError(400, "The request body must be a JSON object.", ODATA_EXCEPTION)
    fields = {}
    for name, value in data.items():
        if name.startswith("@") or "@odata." in name:
            continue  # annotations: @odata.type, @odata.etag
        if name not in entity.fields:
            raise ODataError(
                400,
                f"The property '{name}' does not exist on type '{entity.qualified_type}'. "
                "Make sure to only use property names that are defined by the type.",
                ODATA_EXCEPTION,
            )
        fields[name] = convert(entity, name, value)
    return fields


def parse_key(text: str, entity: EntitySet) -> tuple:
    """`dataAreaId='usrt',JournalBatchNumber='00601'` (or one bare value for a one-field key), in key order."""
    values: dict[str, object] = {}
    position, text = 0, text.strip()
    while position < len(text):
        match = _KEY_PART.match(text, position)
        if match is None or match.end() == position:
            raise ODataError(
                400, f"Bad Request - Error in query syntax: the key '{text}' is not valid.", ODATA_EXCEPTION
            )
        name = match.group("name") or (entity.keys[0] if len(entity.keys) == 1 else None)
        if name not in entity.keys:
            break
        values[name] = _key_literal(entity, name, match.group("value").strip())
        position = match.end()
    if set(values) != set(entity.keys):
        raise ODataError(
            400,
            "The number of keys specified in the URI does not match number of key properties for the resource "
            f"'{entity.qualified_type}'.",
            ODATA_EXCEPTION,
        )
    return tuple(values[name] for name in entity.keys)


def _key_literal(entity: EntitySet, name: str, literal: str):
    kind = entity.fields[name]
    quoted = literal.startswith("'") and literal.endswith("'") and len(literal) >= 2
    if kind == "Edm.String":
        if not quoted:
            raise _cannot_convert(literal, kind)
        return literal[1:-1].replace("''", "'")
    if kind in ("Edm.Decimal", "Edm.Int32"):
        if not _NUMBER.match(literal):
            raise _cannot_convert(literal, entity.edm_type(name))
        return _number(literal.rstrip("mMdD"), entity.edm_type(name), integral=kind == "Edm.Int32")
    if kind == "Edm.DateTimeOffset":
        return convert(entity, name, literal.strip("'"))
    member = literal.partition("'")[2][:-1] if "'" in literal else literal
    return convert(entity, name, member.replace("''", "'"))


def key_segment(entity: EntitySet, row: dict) -> str:
    """The canonical URL of a row below the service root: `LedgerJournalLines(dataAreaId='usrt',...,LineNumber=1)`."""
    parts = []
    for name in entity.keys:
        value, kind = row[name], entity.fields[name]
        if kind == "Edm.String":
            literal = "'" + value.replace("'", "''") + "'"
        elif kind.startswith("Edm."):
            literal = format(value, "f") if isinstance(value, Decimal) else str(value)
        else:
            literal = f"{NAMESPACE}.{kind}'{value}'"
        parts.append(f"{name}={literal}")
    return f"{entity.name}({','.join(parts)})"


def ieee754_compatible(request: ODataRequest) -> bool:
    """`Accept: application/json;IEEE754Compatible=true`: the client wants Edm.Decimal values as strings."""
    return "ieee754compatible=true" in request.headers.get("accept", "").replace(" ", "").lower()


class ODataService:
    """Routes one request to the entity sets of a FinanceOperationsModel."""

    def __init__(self, model: FinanceOperationsModel, settings: FinanceOperationsSettings):
        self.model = model
        self.settings = settings
        self.dialect = Dialect()

    def execute(self, request: ODataRequest) -> ODataResponse:
        try:
            response = self._dispatch(request)
            if response.media_type == JSON_TYPE and ieee754_compatible(request):
                response.media_type = JSON_TYPE.replace("IEEE754Compatible=false", "IEEE754Compatible=true")
            return response
        except FilterError as exc:
            return error_response(
                400, str(exc), ODATA_EXCEPTION, message=f"The query specified in the URI is not valid. {exc}"
            )
        except ODataError as exc:
            return error_response(exc.status, exc.inner, exc.kind, exc.message)
        except WriteFailed as exc:
            return error_response(400, exc.infolog, WRITE_EXCEPTION)
        except NotFound:
            return error_response(404, f"Resource not found for the segment '{request.path}'.")

    # -- routing -------------------------------------------------------------------------------------

    def _dispatch(self, request: ODataRequest) -> ODataResponse:
        path = request.path.strip("/")
        if path in ("", "$metadata"):
            if request.method != "GET":
                raise ODataError(405, f"The requested resource does not support http method '{request.method}'.")
            return self._service_document(request) if path == "" else self._metadata(request)
        match = _PATH.match(path)
        if match is None:
            raise not_found(path.split("/")[0])
        entity = self.model.sets.get(match.group("set"))
        if entity is None:
            raise not_found(match.group("set"))
        key = parse_key(match.group("key"), entity) if match.group("key") is not None else None
        tail = match.group("tail")
        if tail is not None and tail != "$count" and tail not in entity.navigation:
            raise not_found(tail)
        if request.method == "GET":
            return self._read(request, entity, key, tail)
        return self._write(request, entity, key, tail)

    def _read(self, request: ODataRequest, entity: EntitySet, key: tuple | None, tail: str | None) -> ODataResponse:
        if key is None:
            rows = self._scoped_rows(request, entity)
            if tail == "$count":
                query = parse_query({k: v for k, v in request.params.items() if k == "$filter"}, entity)
                return ODataResponse(200, str(run(rows, query, entity, 1).count).encode(), media_type="text/plain")
            return self._collection(request, entity, rows, entity.name)
        row = self._row(request, entity, key)
        if tail is None:
            query = parse_query({k: v for k, v in request.params.items() if k in ("$select", "$expand")}, entity)
            body = {"@odata.context": f"{request.root}/$metadata#{entity.name}/$entity"}
            return self._json(200, body | self._render(request, entity, row, query.select, query.expand))
        child = self.model.sets[entity.navigation[tail]]
        return self._collection(request, child, self._children(row).values(), child.name)

    def _collection(self, request: ODataRequest, entity: EntitySet, rows, context: str) -> ODataResponse:
        query = parse_query(request.params, entity)
        size, applied = self._page_size(request)
        page = run(rows, query, entity, size)
        selection = f"({','.join(query.select)})" if query.select else ""
        body: dict = {"@odata.context": f"{request.root}/$metadata#{context}{selection}"}
        if query.count:
            body["@odata.count"] = page.count
        body["value"] = [self._render(request, entity, row, query.select, query.expand) for row in page.rows]
        if page.next_after is not None:
            body["@odata.nextLink"] = self._next_link(request, page)
        return self._json(200, body, {"Preference-Applied": applied} if applied else None)

    def _page_size(self, request: ODataRequest) -> tuple[int, str | None]:
        match = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", request.headers.get("prefer", ""))
        if match is None:
            return self.settings.max_page_size, None
        size = max(1, min(int(match.group(1)), self.settings.max_page_size))
        return size, f"odata.maxpagesize={size}"

    def _next_link(self, request: ODataRequest, page) -> str:
        params = {k: v for k, v in request.params.items() if k not in ("$skiptoken", "$skip", "$top")}
        if page.top_left is not None:
            params["$top"] = str(page.top_left)
        params["$skiptoken"] = page.next_after
        query = urlencode(params, quote_via=quote, safe="$,'()*:")
        link = f"{request.path.strip('/')}?{query}"
        if self.dialect.next_link == "relative":
            return link
        if self.dialect.next_link == "root_relative":
            return f"{urlsplit(request.root).path}/{link}"
        return f"{request.root}/{link}"

    def _scoped_rows(self, request: ODataRequest, entity: EntitySet):
        rows = self.model.tables[entity.name].rows.values()
        if not entity.company_scoped or self._cross_company(request):
            return rows
        company = self.settings.default_company.lower()
        return [r for r in rows if r["dataAreaId"] == company]

    @staticmethod
    def _cross_company(request: ODataRequest) -> bool:
        return request.params.get("cross-company", "").lower() == "true"

    def _row(self, request: ODataRequest, entity: EntitySet, key: tuple) -> dict:
        """The row at `key`. Reading another company's row takes cross-company=true; a write names its
        company by the key's dataAreaId (cross-company-behavior.md: CUD works for any company)."""
        row = self.model.tables[entity.name].get(key)
        outside = entity.company_scoped and fold(key[0]) != self.settings.default_company.lower()
        if row is None or (outside and request.method == "GET" and not self._cross_company(request)):
            raise NotFound(key)
        return row

    def _children(self, header: dict) -> dict:
        journal = self.model.journal(header["dataAreaId"], header["JournalBatchNumber"])
        return journal.lines if journal is not None else {}

    def _render(
        self, request: ODataRequest, entity: EntitySet, row: dict, select: list[str] | None, expand: list[str] = ()
    ) -> dict:
        version = self.model.tables[entity.name].version(row)
        rendered = {"@odata.etag": f'W/"{entity.type_name}-{version}"'}
        as_text = ieee754_compatible(request)
        for name in select or entity.fields:
            value = row.get(name)
            rendered[name] = format(value, "f") if as_text and isinstance(value, Decimal) else value
        if entity.name == "DimensionParameters" and self.dialect.segment_delimiter == "characters":
            rendered["DimensionSegmentDelimiter"] = self.settings.segment_delimiter
        for navigation in expand:
            child = self.model.sets[entity.navigation[navigation]]
            lines = sorted(self._children(row).values(), key=lambda r: r["LineNumber"])
            rendered[navigation] = [self._render(request, child, r, None) for r in lines]
        return rendered

    def _service_document(self, request: ODataRequest) -> ODataResponse:
        sets = [{"name": n, "kind": "EntitySet", "url": n} for n in self.model.sets]
        return self._json(200, {"@odata.context": f"{request.root}/$metadata", "value": sets})

    def _metadata(self, request: ODataRequest) -> ODataResponse:
        return ODataResponse(200, metadata_document(self.model.sets.values()), media_type="application/xml")

    @staticmethod
    def _json(status: int, body: dict, headers: dict | None = None) -> ODataResponse:
        return ODataResponse(status, dumps(body), {"OData-Version": "4.0", **(headers or {})})

    # -- writes --------------------------------------------------------------------------------------

    def _write(self, request: ODataRequest, entity: EntitySet, key: tuple | None, tail: str | None) -> ODataResponse:
        method = request.method
        if tail == "$count" or not (entity.writable or tail) or method not in ("POST", "DELETE", *UPDATE_METHODS):
            raise ODataError(
                405, f"The sandbox serves '{entity.name}' read-only; '{method}' requests are not supported on it."
            )
        if method == "POST" and (key is None or tail is not None):
            return self._create(request, entity, key, tail)
        if key is None or tail is not None:
            raise ODataError(405, f"'{method}' needs the key of one {entity.type_name}.")
        row = self._row(request, entity, key)
        self._check_etag(request, entity, row)
        if method == "DELETE":
            (self.model.delete_header if entity.name == "LedgerJournalHeaders" else self.model.delete_line)(key)
            return ODataResponse(204, headers={"OData-Version": "4.0"}, media_type=None)
        changes = read_body(entity, request.body)
        _same_key(entity, row, changes)
        update = self.model.update_header if entity.name == "LedgerJournalHeaders" else self.model.update_line
        update(key, changes)
        return ODataResponse(204, headers={"OData-Version": "4.0"}, media_type=None)

    def _create(self, request: ODataRequest, entity: EntitySet, key: tuple | None, tail: str | None) -> ODataResponse:
        if tail is not None:  # POST Headers(key)/LedgerJournalLine: a line of that journal
            header = self._row(request, entity, key)
            entity = self.model.sets[entity.navigation[tail]]
            fields = read_body(entity, request.body)
            for name in ("dataAreaId", "JournalBatchNumber"):
                if fields.get(name) and fold(fields[name]) != fold(header[name]):
                    raise ODataError(400, f"The {name} '{fields[name]}' differs from the journal's in the URL.")
                fields[name] = header[name]
        else:
            fields = read_body(entity, request.body)
        create = self.model.create_header if entity.name == "LedgerJournalHeaders" else self.model.create_line
        row = create(fields)
        location = f"{request.root}/{key_segment(entity, row)}"
        headers = {"OData-Version": "4.0", "Location": location, "OData-EntityId": location}
        if "return=minimal" in request.headers.get("prefer", ""):
            return ODataResponse(204, headers=headers | {"Preference-Applied": "return=minimal"}, media_type=None)
        body = {"@odata.context": f"{request.root}/$metadata#{entity.name}/$entity"}
        return ODataResponse(201, dumps(body | self._render(request, entity, row, None)), headers)

    def _check_etag(self, request: ODataRequest, entity: EntitySet, row: dict) -> None:
        expected = request.headers.get("if-match")
        if expected is None or expected.strip() == "*":
            return
        current = f'W/"{entity.type_name}-{self.model.tables[entity.name].version(row)}"'
        if expected.strip() != current:
            raise ODataError(
                412, "The ETag value in the request header does not match with the current ETag value of the object."
            )


def _same_key(entity: EntitySet, row: dict, changes: dict) -> None:
    for name in entity.keys:
        if name in changes and fold(changes[name]) != fold(row[name]):
            raise ODataError(400, f"The key field '{name}' cannot be changed ('{row[name]}' to '{changes[name]}').")
