"""The entity endpoint: {site}/entity/Default/{version}/{Entity}[/{id} | /{key}/{key}… | /{Action}[/status/{op}]].

GET lists records (no server-driven paging: $top/$skip only) or reads one; PUT inserts or updates;
DELETE removes; POST runs an action as a long-running operation: 202 with a Location to poll,
which answers 202 until the operation ends, then 204 (or the operation's error).
"""

from __future__ import annotations

import json as jsonlib
import re
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal

from starlette.requests import Request
from starlette.responses import Response

from ..core.faults import FaultRule
from . import Dialect
from .contract import Entity, entities
from .models import AcumaticaModel, Conflict, Context, Invalid, NotFound
from .query import QueryError, parse_query
from .rules import ACTIONS
from .seed import now_stamp
from .wire import WireError, attach_errors, error_response, json, read_record, render

NO_ENTITY = "PX.Api.ContractBased.NoEntitySatisfiesTheConditionException"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%m/%d/%Y", "%d-%b-%Y")
# ASP.NET's default requestPathInvalidCharacters, checked on the decoded path before any handler runs (IIS
# decodes %2F to a slash first, so a key holding one becomes two path segments).
_UNSAFE_IN_PATH = "<>*%&:\\?"


def not_found_error() -> Response:
    return error_response(500, "An error has occurred.", "No entity satisfies the condition.", exception_type=NO_ENTITY)


def bad_request(exc: Exception) -> Response:
    if isinstance(exc, WireError):
        return json({"message": "The request is invalid.", "modelState": {f"entity.{exc.path}": [exc.message]}}, 400)
    return error_response(400, "The request is invalid.", str(exc), exception_type="System.ArgumentException")


class ContractApi:
    def __init__(self, model: AcumaticaModel, site: str, settings):
        self.model, self.site, self.settings = model, site, settings
        self.dialect = Dialect()

    def site_offset(self) -> timedelta:
        return timedelta(hours=self.dialect.site_utc_offset_hours)

    def render(self, row: dict, entity: Entity, version: str, *args, **kwargs) -> dict:
        """A record as this site answers it (wire.render, in the dialect's time zone for dates)."""
        offset = self.site_offset() if self.dialect.dates_at_site_offset else None
        return render(row, entity, version, *args, date_offset=offset, **kwargs)

    def base(self, version: str) -> str:
        return f"{self.site}/entity/Default/{version}"

    def link(self, version: str, entity: Entity, row: dict) -> str:
        return f"{self.base(version)}/{entity.name}/{row['id']}"

    # -- routing -----------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        self.model.settle()
        endpoint, version = request.path_params["endpoint"], request.path_params["version"]
        if endpoint != "Default" or version not in self.settings.versions:
            return error_response(404, f"The {endpoint}/{version} endpoint is not found on this site.")
        rest = request.path_params.get("rest", "")
        unsafe = next((ch for ch in rest if ch in _UNSAFE_IN_PATH), None)
        if unsafe is not None:
            return error_response(
                400, f"A potentially dangerous Request.Path value was detected from the client ({unsafe})."
            )
        # Key values are separated by slashes or by vertical bars (IDG: "Retrieve a Record by Key Fields").
        parts = [p for p in rest.replace("|", "/").split("/") if p]
        contract = entities(version)
        if not parts or parts[0] not in contract:
            name = parts[0] if parts else ""
            return error_response(404, f"The '{name}' entity is not found in the {endpoint}/{version} endpoint.")
        entity, rest = contract[parts[0]], parts[1:]
        try:
            return await self._dispatch(request, version, entity, rest)
        except (QueryError, WireError) as exc:
            return bad_request(exc)
        except NotFound:
            if self.dialect.missing_record_status == 404:
                return error_response(404, "No entity satisfies the condition.")
            return not_found_error()

    async def _dispatch(self, request: Request, version: str, entity: Entity, rest: list[str]) -> Response:
        method = request.method
        actions = ACTIONS.get(entity.name, {})
        if method == "POST" and len(rest) == 1:
            if rest[0] not in actions:
                return error_response(404, f"The {rest[0]} action does not exist for the {entity.name} entity.")
            return await self.invoke(request, version, entity, rest[0])
        if method == "GET" and len(rest) == 3 and rest[0] in actions and rest[1] == "status":
            return self.status(version, entity, rest[2])
        if method == "GET" and rest == ["$adHocSchema"]:
            return json(self.render({"id": None}, entity, version, 1, None, expand=set(entity.details)))
        if entity.inquiry:
            if method != "PUT" or rest:
                return error_response(405, f"The requested resource does not support http method '{method}'.")
            return self.inquiry(request, version, entity)
        if method == "GET":
            return self.read(request, version, entity, rest) if rest else self.list(request, version, entity)
        if method == "PUT" and not rest:
            return await self.put(request, version, entity)
        if method == "DELETE" and rest:
            return self.delete(version, entity, rest)
        return error_response(405, f"The requested resource does not support http method '{method}'.")

    def _find(self, entity: Entity, rest: list[str]) -> dict:
        if len(rest) == 1 and _GUID.match(rest[0]):
            return self.model.by_id(entity.name, rest[0])
        if len(rest) > 1 and not self.dialect.compound_key_reads:
            raise NotFound(rest)
        return self.model.by_keys(entity.name, rest)

    def context(self, request: Request) -> Context:
        now = now_stamp()
        session = getattr(request.state, "session", None)
        branch = (session.branch if session else None) or self.settings.branches[0]
        named = self.model.branch(request.headers.get("px-cbapibranch"))
        return Context(
            now,
            business_date(request.headers.get("px-cbapibusinessdate")) or now.date(),
            (named["BranchID"] if named else branch),
        )

    # -- reading -----------------------------------------------------------------------------------

    def list(self, request: Request, version: str, entity: Entity) -> Response:
        fault = request.state.fault
        if fault is not None and fault.kind == "mutate":
            for mutation in fault.mutations:
                self.model.mutate(mutation.entity, mutation.key, mutation.set)
        query = parse_query(request.query_params, entity)
        rows = [r for r in self.model.rows(entity.name) if query.filter is None or query.filter.matches(r)]
        end = None if query.top is None else query.skip + query.top
        page = rows[query.skip : end]
        expand = query.expand if self.dialect.details_in_lists else query.expand - set(entity.details)
        body = [
            self.render(row, entity, version, number, self.link(version, entity, row), query.select, expand)
            for number, row in enumerate(page, start=1)
        ]
        if not self.dialect.stamp_offsets:
            body = [without_offsets(record) for record in body]
        return json(corrupted(body, fault))

    def read(self, request: Request, version: str, entity: Entity, rest: list[str]) -> Response:
        query = parse_query(request.query_params, entity)
        row = self._find(entity, rest)
        body = self.render(row, entity, version, 1, self.link(version, entity, row), query.select, query.expand)
        return json(body if self.dialect.stamp_offsets else without_offsets(body))

    def inquiry(self, request: Request, version: str, entity: Entity) -> Response:
        query = parse_query(request.query_params, entity)
        row = {"id": "00000000-0000-0000-0000-000000000000", "Results": list(self.model.branches.values())}
        return json(self.render(row, entity, version, 1, None, query.select, query.expand))

    # -- writing -----------------------------------------------------------------------------------

    async def put(self, request: Request, version: str, entity: Entity) -> Response:
        query = parse_query(request.query_params, entity)
        record = read_record(await body_of(request), entity, version, site_offset=self.site_offset())
        matched = None
        if query.filter is not None:
            matched = next((r for r in self.model.rows(entity.name) if query.filter.matches(r)), None)
            if matched is None:
                raise NotFound(entity.name)
        mode = "insert" if request.headers.get("if-none-match") == "*" else ""
        mode = "update" if request.headers.get("if-match") == "*" else mode
        try:
            row = self.model.put(entity.name, record, self.context(request), matched, mode)
        except Conflict:
            exists = "already exists" if mode == "insert" else "does not exist"
            return error_response(412, f"The {entity.label} record {exists}.")
        except Invalid as refused:
            candidate = {**refused.candidate, "id": refused.candidate.get("id") or str(uuid.uuid4())}
            body = self.render(candidate, entity, version, 1, None, expand=set(entity.details))
            return json(attach_errors(body, refused.problems, refused.summary), 422)
        return json(self.render(row, entity, version, 1, self.link(version, entity, row), query.select, query.expand))

    def delete(self, version: str, entity: Entity, rest: list[str]) -> Response:
        row = self._find(entity, rest)
        try:
            self.model.delete(entity.name, row)
        except Invalid as refused:
            body = self.render(row, entity, version, 1, self.link(version, entity, row))
            return json(attach_errors(body, refused.problems, refused.problems.record[0]), 422)
        return Response(status_code=204)

    # -- actions -----------------------------------------------------------------------------------

    async def invoke(self, request: Request, version: str, entity: Entity, action: str) -> Response:
        body = await body_of(request)
        if not isinstance(body, dict) or not isinstance(body.get("entity"), dict):
            return error_response(400, "The request is invalid.", "The request body must have an 'entity' object.")
        record = read_record(body["entity"], entity, version, "entity", self.site_offset())
        if record.get("id"):
            row = self.model.by_id(entity.name, record["id"])
        else:
            values = [record.get(k) or ("GL" if k == "Module" else "") for k in entity.keys]
            row = self.model.by_keys(entity.name, [str(v) for v in values])
        operation = self.model.start(entity.name, action, row)
        location = f"{self.base(version)}/{entity.name}/{action}/status/{operation}"
        return Response(status_code=202, headers={"Location": location} if self.dialect.action_location else None)

    def status(self, version: str, entity: Entity, operation_id: str) -> Response:
        operation = self.model.operations.get(operation_id)
        if operation is None or operation.entity != entity.name:
            return error_response(404, "The operation is not found.")
        if not operation.done:
            location = f"{self.base(version)}/{entity.name}/{operation.action}/status/{operation_id}"
            return Response(status_code=202, headers={"Location": location})
        if operation.error:
            return error_response(500, "An error has occurred.", operation.error)
        return Response(
            status_code=204, headers={"Location": f"{self.base(version)}/{entity.name}/{operation.record_id}"}
        )


async def body_of(request: Request):
    try:
        return jsonlib.loads(await request.body() or b"{}", parse_float=Decimal)
    except ValueError as exc:
        raise WireError("", f"The request body is not valid JSON: {exc}.") from None


def business_date(text: str | None) -> date | None:
    """PX-CbApiBusinessDate: "the date can be specified in any format"; these are the ones read here."""
    for form in _DATE_FORMATS:
        try:
            return datetime.strptime((text or "").strip(), form).date()
        except ValueError:
            continue
    return None


_UTC_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")


def without_offsets(value):
    """Dialect `stamp_offsets: false`: each date-time's `+00:00` dropped, in records and their details."""
    if isinstance(value, dict):
        return {k: without_offsets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_offsets(v) for v in value]
    if isinstance(value, str) and _UTC_STAMP.fullmatch(value):
        return value.removesuffix("+00:00")
    return value


def corrupted(body: list[dict], fault: FaultRule | None) -> list[dict]:
    """The page's first record with `fault.field` set to `fault.value`, as a faulty customization would."""
    if fault is not None and fault.kind == "corrupt" and body and fault.field:
        body[0][fault.field] = {"value": fault.value}
    return body
