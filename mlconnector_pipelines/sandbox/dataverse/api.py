"""The Web API's resources: entity sets, records, their navigation properties, actions and functions.

One request in, one Response out; the model applies the rules. `Prefer` decides the page size
(`odata.maxpagesize`, at most 5,000), change tracking (`odata.track-changes`), annotations and
whether a write answers with the record (`return=representation`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from starlette.responses import Response

from . import changes, payload
from .errors import (
    CONCURRENCY_MISMATCH,
    DUPLICATE_RECORD,
    DataverseError,
    bad_argument,
    no_resource,
    no_segment,
    not_found,
    not_supported,
)
from .metadata import document
from .models import DataverseModel
from .query import TRACKING_REFUSED, Query, encode_skiptoken, link_query, parse_query, run
from .render import Annotations, Renderer
from .tables import TABLES, Table
from .webhooks import validate_registration
from .wire import empty, error_response, json_response

VERSIONS = ("v9.0", "v9.1", "v9.2")
COUNT_LIMIT = 5000
_PATH = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)(?:\((?P<key>[^)]*)\))?(?:/(?P<tail>[\w$]+))?$")
_KEY = re.compile(r"^(?:\w+=)?\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?$")


@dataclass
class Call:
    method: str
    version: str
    path: str  # below /api/data/<version>/
    params: dict[str, str]
    headers: dict[str, str]  # lower-case names
    prefer: dict[str, str]
    body: bytes
    base: str  # https://host/api/data/<version>
    url: str
    applied: list[str] = field(default_factory=list)  # Preference-Applied

    @property
    def annotations(self) -> Annotations:
        return Annotations(self.prefer.get("odata.include-annotations"))


class DataverseApi:
    def __init__(self, model: DataverseModel, settings, organization_id: str, business_unit_id: str):
        self.model, self.settings = model, settings
        self.organization_id, self.business_unit_id = organization_id, business_unit_id

    def execute(self, call: Call) -> Response:
        try:
            return self._dispatch(call)
        except DataverseError as exc:
            return error_response(exc)

    # -- routing -------------------------------------------------------------------------------------------

    def _dispatch(self, call: Call) -> Response:
        if call.version not in VERSIONS:
            raise no_resource(call.url)
        path = call.path.strip("/")
        if path in ("", "$metadata"):
            return self._service_documents(call, path)
        match = _PATH.match(path)
        if match is None:
            raise no_segment(path.split("/")[0].split("(")[0])
        name, key_text, tail = match.group("name"), match.group("key"), match.group("tail")
        actions = {"WhoAmI": ("GET", self._who_am_i), "WinOpportunity": ("POST", self._win)}
        actions |= {"ConvertQuoteToSalesOrder": ("POST", self._convert)}
        if name in actions:
            method, handler = actions[name]
            if call.method != method or key_text is not None or tail is not None:
                raise no_resource(call.url)
            return handler(call)
        table = TABLES.get(name)
        if table is None:
            raise no_segment(name)
        key = _key(key_text) if key_text is not None else None
        if call.method == "GET":
            return self._read(call, table, key, tail)
        return self._write(call, table, key, tail)

    def _service_documents(self, call: Call, path: str) -> Response:
        if call.method != "GET":
            raise no_resource(call.url)
        if path == "$metadata":
            xml = document(set(self.settings.change_tracking))
            return Response(xml, media_type="application/xml", headers={"OData-Version": "4.0"})
        sets = [{"name": n, "kind": "EntitySet", "url": n} for n in TABLES]
        return json_response({"@odata.context": f"{call.base}/$metadata", "value": sets})

    def _write(self, call: Call, table: Table, key: str | None, tail: str | None) -> Response:
        unsupported = DataverseError(405, "", f"The requested resource does not support http method '{call.method}'.")
        if tail is not None:
            raise unsupported
        if call.method == "POST" and key is None:
            return self._create(call, table)
        if key is None or call.method not in ("PATCH", "DELETE"):
            raise unsupported
        if table.read_only:
            raise DataverseError(405, "0x80040227", f"The {table.logical} table can't be changed.")
        if call.method == "DELETE":
            return self._delete(call, table, key)
        return self._upsert(call, table, key)

    # -- reads ---------------------------------------------------------------------------------------------

    def _read(self, call: Call, table: Table, key: str | None, tail: str | None) -> Response:
        if key is None:
            if tail == "$count":
                return self._count(call, table)
            if tail is not None:
                raise no_segment(tail)
            return self._collection(call, table, self.model.tables[table.entity_set].values(), table.entity_set)
        row = self.model.get(table.entity_set, key)
        if tail is None:
            return self._single(call, table, row)
        if tail in table.lines:
            lines = table.lines[tail]
            child = TABLES[lines.child_set]
            related = [
                r for r in self.model.tables[child.entity_set].values() if r[f"_{lines.child_attribute}_value"] == key
            ]
            return self._collection(call, child, related, f"{table.entity_set}({key})/{tail}")
        if tail in table.navigation:
            lookup = table.navigation[tail]
            target = self.model.find(lookup.target_of(tail), row.get(lookup.property))
            if target is None or row["@lookup"].get(lookup.attribute) != lookup.target_of(tail):
                return empty(204)
            target_table = next(t for t in TABLES.values() if t.logical == lookup.target_of(tail))
            return self._single(call, target_table, target)
        raise no_segment(tail)

    def _single(self, call: Call, table: Table, row: dict) -> Response:
        query = parse_query({k: v for k, v in call.params.items() if k in ("$select", "$expand")}, table, TABLES)
        etag = f'W/"{row["versionnumber"]}"'
        if call.headers.get("if-none-match") == etag and not query.expand and not call.annotations.patterns:
            return empty(304)
        renderer = Renderer(self.model, call.base, call.annotations)
        body = {"@odata.context": renderer.context(table, query.select, query.expand, "/$entity")}
        body |= renderer.row(table, row, query.select, query.expand)
        return json_response(body, headers=self._applied(call, call.annotations.applied))

    def _count(self, call: Call, table: Table) -> Response:
        if call.params.get("$deltatoken"):
            self._check_tracking(call, table)
            since = changes.parse(call.params["$deltatoken"], self.model)
            number = len(changes.changes(self.model, table.entity_set, since, self.model.version))
        else:
            query = parse_query({k: v for k, v in call.params.items() if k == "$filter"}, table, TABLES)
            rows = self.model.tables[table.entity_set].values()
            number = sum(1 for r in rows if query.filter is None or query.filter.matches(r))
        return Response(str(number), media_type="text/plain", headers={"OData-Version": "4.0"})

    def _page_size(self, call: Call) -> tuple[int, bool]:
        asked = call.prefer.get("odata.maxpagesize")
        if asked is None or not asked.isdigit() or int(asked) < 1:
            return self.settings.max_page_size, False
        size = min(int(asked), self.settings.max_page_size, COUNT_LIMIT)
        call.applied.append(f"odata.maxpagesize={size}")
        return size, True

    def _collection(self, call: Call, table: Table, rows, path: str) -> Response:
        query = parse_query(call.params, table, TABLES)
        if query.deltatoken or "odata.track-changes" in call.prefer:
            if path != table.entity_set:
                raise not_supported("Change tracking is only supported on an entity set.")
            return self._tracked(call, table, query)
        size, sized = self._page_size(call)
        top = None if sized else query.top  # documented: with odata.maxpagesize, $top is ignored
        after = (query.cursor or {}).get("after")
        page = run(rows, query.filter, query.orderby, table.key, min(size, top) if top is not None else size, after)
        renderer = Renderer(self.model, call.base, call.annotations)
        body: dict = {"@odata.context": renderer.context(table, query.select, query.expand)}
        if query.count:
            body["@odata.count"] = min(page.count, COUNT_LIMIT)
            if call.annotations.wants("Microsoft.Dynamics.CRM.totalrecordcount"):
                body["@Microsoft.Dynamics.CRM.totalrecordcount"] = min(page.count, COUNT_LIMIT)
            if call.annotations.wants("Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"):
                body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = page.count > COUNT_LIMIT
        body["value"] = [renderer.row(table, r, query.select, query.expand) for r in page.rows]
        if page.last is not None and top is None:
            state = {"after": page.last, "page": (query.cursor or {}).get("page", 0) + 1}
            body["@odata.nextLink"] = self._next_link(call, path, table, page.rows, state, tracking=False)
        return json_response(body, headers=self._applied(call, call.annotations.applied))

    def _next_link(self, call: Call, path: str, table: Table, rows: list[dict], state: dict, tracking: bool) -> str:
        params = {k: v for k, v in call.params.items() if k != "$skiptoken"}
        token = encode_skiptoken(state, table.key, rows[0][table.key], rows[-1][table.key], tracking)
        return self._link(call, f"{path}?{link_query(params, token)}")

    # -- change tracking ----------------------------------------------------------------------------------

    def _check_tracking(self, call: Call, table: Table) -> None:
        if table.entity_set not in self.settings.change_tracking:
            raise DataverseError(400, "0x80072491", f"Entity {table.logical} isn't enabled for change tracking.")
        for option in TRACKING_REFUSED:
            if option in call.params:
                raise not_supported(f'The "{option}" query parameter isn\'t supported when Change Tracking is enabled.')

    def _tracked(self, call: Call, table: Table, query: Query) -> Response:
        self._check_tracking(call, table)
        if "odata.track-changes" in call.prefer:
            call.applied.append("odata.track-changes")
        size, _ = self._page_size(call)
        renderer = Renderer(self.model, call.base, call.annotations)
        cursor = query.cursor or {}
        selected = {k: v for k, v in call.params.items() if k == "$select"}
        if query.deltatoken:
            try:
                since = changes.parse(query.deltatoken, self.model)
            except DataverseError as exc:
                if exc is changes.EXPIRED and self.settings.expired_delta_status == 410:
                    raise DataverseError(410, "", "The sync state of this delta link was not found.") from None
                raise
            upto = self.model.version if self.settings.delta_pages == "live" else cursor.get("upto", self.model.version)
            pending = changes.after(changes.changes(self.model, table.entity_set, since, upto), cursor.get("after"))
            page, more = pending[:size], len(pending) > size
            body: dict = {"@odata.context": renderer.context(table, query.select, suffix="/$delta")}
            body["value"] = [self._change(renderer, table, query, c, call.base) for c in page]
            if more:
                last = page[-1]
                state = {
                    "upto": upto,
                    "after": [int(last.row is None), last.version],
                    "page": cursor.get("page", 0) + 1,
                }
                params = selected | {"$deltatoken": query.deltatoken}
                token = encode_skiptoken(state, table.key, page[0].id, last.id, True)
                body["@odata.nextLink"] = self._link(call, f"{table.entity_set}?{link_query(params, token)}")
            else:
                body["@odata.deltaLink"] = self._delta_link(call, table, selected, upto)
            return json_response(body, headers=self._applied(call, call.annotations.applied))
        start = cursor.get("track", self.model.version)
        page = run(self.model.tables[table.entity_set].values(), None, [], table.key, size, cursor.get("after"))
        body = {"@odata.context": renderer.context(table, query.select)}
        if query.count:
            body["@odata.count"] = min(page.count, COUNT_LIMIT)
        body["value"] = [renderer.row(table, r, query.select) for r in page.rows]
        if page.last is not None:
            state = {"after": page.last, "track": start, "page": cursor.get("page", 0) + 1}
            body["@odata.nextLink"] = self._next_link(call, table.entity_set, table, page.rows, state, tracking=True)
        else:
            body["@odata.deltaLink"] = self._delta_link(call, table, selected, start)
        return json_response(body, headers=self._applied(call, call.annotations.applied))

    def _link(self, call: Call, rest: str) -> str:
        """A next or delta link, absolute or relative to the server's root (dialect `links`)."""
        link = f"{call.base}/{rest}"
        return link if self.settings.links == "absolute" else "/" + link.split("://", 1)[-1].split("/", 1)[-1]

    def _delta_link(self, call: Call, table: Table, selected: dict, version: int) -> str:
        params = selected | {"$deltatoken": changes.issue(version, self.model.now())}
        return self._link(call, f"{table.entity_set}?{link_query(params)}")

    def _change(self, renderer: Renderer, table: Table, query: Query, change, base: str) -> dict:
        if change.row is not None:
            return renderer.row(table, change.row, query.select)
        named = change.id if self.settings.deleted_entity_id == "guid" else f"{base}/{table.entity_set}({change.id})"
        return {
            "@odata.context": f"{base}/$metadata#{table.entity_set}/$deletedEntity",
            "id": named,
            "reason": "deleted",
        }

    # -- writes --------------------------------------------------------------------------------------------

    def _create(self, call: Call, table: Table, key: str | None = None) -> Response:
        if table.read_only:
            raise DataverseError(405, "0x80040227", f"The {table.logical} table can't be changed.")
        values, binds = payload.read(table, payload.parse_json(call.body, table.entity_set), creating=True)
        key = key or values.pop(table.key, None)
        validate_registration(self.model, table, values, binds, None)
        row = self.model.create(table.entity_set, values, binds, key)
        return self._written(call, table, row, created=True)

    def _upsert(self, call: Call, table: Table, key: str) -> Response:
        existing = self.model.tables[table.entity_set].get(key)
        if_match, if_none = call.headers.get("if-match"), call.headers.get("if-none-match")
        if if_none == "*" and existing is not None:
            raise DataverseError(412, *DUPLICATE_RECORD)
        if existing is None:
            if if_match is not None:
                raise not_found(table.logical, key)
            return self._create(call, table, key)  # PATCH to a new key is an upsert that creates
        self._check_etag(if_match, existing)
        values, binds = payload.read(table, payload.parse_json(call.body, table.entity_set), creating=False)
        validate_registration(self.model, table, values, binds, existing)
        row = self.model.update(table.entity_set, key, values, binds)
        return self._written(call, table, row, created=False)

    def _delete(self, call: Call, table: Table, key: str) -> Response:
        row = self.model.get(table.entity_set, key)
        self._check_etag(call.headers.get("if-match"), row)
        self.model.delete(table.entity_set, key)
        return empty(204)

    @staticmethod
    def _check_etag(if_match: str | None, row: dict) -> None:
        if if_match is None or if_match.strip() == "*":
            return
        if f'W/"{row["versionnumber"]}"' not in [tag.strip() for tag in if_match.split(",")]:
            raise DataverseError(412, *CONCURRENCY_MISMATCH)

    def _written(self, call: Call, table: Table, row: dict, created: bool) -> Response:
        entity_id = f"{call.base}/{table.entity_set}({row[table.key]})"
        headers = {"OData-EntityId": entity_id}
        if call.prefer.get("return") != "representation":
            return empty(204, headers)
        call.applied.append("return=representation")
        query = parse_query({k: v for k, v in call.params.items() if k in ("$select", "$expand")}, table, TABLES)
        renderer = Renderer(self.model, call.base, call.annotations)
        body = {"@odata.context": renderer.context(table, query.select, query.expand, "/$entity")}
        body |= renderer.row(table, row, query.select, query.expand)
        return json_response(body, 201 if created else 200, headers | self._applied(call, call.annotations.applied))

    # -- actions and functions ----------------------------------------------------------------------------

    def _who_am_i(self, call: Call) -> Response:
        return json_response(
            {
                "@odata.context": f"{call.base}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": self.business_unit_id,
                "UserId": self.model.reference.app_user,
                "OrganizationId": self.organization_id,
            }
        )

    def _win(self, call: Call) -> Response:
        body = payload.parse_json(call.body, "WinOpportunity")
        close = body.get("OpportunityClose") if isinstance(body, dict) else None
        if not isinstance(close, dict):
            raise bad_argument("The OpportunityClose parameter is required.")
        if not isinstance(body.get("Status"), int):
            raise bad_argument("The Status parameter is required.")
        target = close.get("opportunityid@odata.bind")
        found = re.search(r"opportunities\(\{?([0-9a-fA-F-]{36})\}?\)$", str(target or ""))
        if found is None:
            raise bad_argument("OpportunityClose must name its opportunity: opportunityid@odata.bind.")
        attributes = {k: v for k, v in close.items() if "@" not in k}
        self.model.win_opportunity(found.group(1).lower(), attributes, body["Status"])
        return empty(204)

    def _convert(self, call: Call) -> Response:
        body = payload.parse_json(call.body, "ConvertQuoteToSalesOrder")
        if not isinstance(body, dict) or not payload.GUID.match(str(body.get("QuoteId", ""))):
            raise bad_argument("The QuoteId parameter is required.")
        orders = TABLES["salesorders"]
        column_set = body.get("ColumnSet") or {"AllColumns": True}
        columns = None if column_set.get("AllColumns") else tuple(column_set.get("Columns") or ())
        for column in columns or ():
            if column not in orders.types and column not in orders.lookup:
                raise bad_argument(f"'{column}' is not a valid attribute of salesorder.")
        status = body.get("QuoteCloseStatus")
        order = self.model.convert_quote(str(body["QuoteId"]).lower(), columns, status, body.get("QuoteCloseDate"))
        select = None
        if columns is not None:
            select = [orders.lookup[c].property if c in orders.lookup else c for c in columns]
        renderer = Renderer(self.model, call.base, call.annotations)
        out = {"@odata.context": f"{call.base}/$metadata#salesorders/$entity"}
        return json_response(out | renderer.row(orders, order, select))

    @staticmethod
    def _applied(call: Call, *extra: str | None) -> dict:
        prefs = [*call.applied, *(e for e in extra if e)]
        return {"Preference-Applied": ",".join(prefs)} if prefs else {}


def _key(text: str) -> str:
    match = _KEY.match(text.strip())
    if match is None:
        raise DataverseError(400, "0x0", "Bad Request - Error in query syntax.")
    return match.group(1).lower()
