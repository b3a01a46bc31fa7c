"""The admin API beside the base's faults/state/reset: raw records (exact decimals, details included), a raw
upsert with explicit stamps, opening and closing financial periods, and ending every token and session."""

from __future__ import annotations

import json as jsonlib
from datetime import date, datetime
from decimal import Decimal

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import Dialect
from .ledger import period_id
from .models import NotFound
from .seed import now_stamp
from .wire import format_stamp, json

ADMIN = "/_sandbox/acumatica"


def plain(value):
    """A record as tests read it: stamps as ISO text, amounts as exact numbers."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return format_stamp(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def admin_routes(simulator) -> list[Route]:
    model = simulator.model

    async def records(request: Request) -> Response:
        name = request.path_params["entity"]
        if name not in model.tables:
            return json({"error": f"no entity {name}; known: {sorted(model.tables)}"}, 404)
        model.settle()
        if request.method == "GET":
            return json([plain(row) for row in model.rows(name)])
        body = jsonlib.loads(await request.body() or b"{}", parse_float=Decimal)
        raw = body.get("record", body)
        return json(plain(model.put_raw(name, raw, now_stamp())))

    async def periods(request: Request) -> Response:
        body = await request.json()
        pid = period_id(body.get("period"))
        try:
            row = model.set_period(pid or "", bool(body.get("closed")), now_stamp())
        except NotFound:
            return json({"error": f"no financial period {body.get('period')}"}, 404)
        return json(plain(row))

    async def delete(request: Request) -> Response:
        """A user deletes a record in Acumatica's screens (the contract API's own rules apply)."""
        name = request.path_params["entity"]
        try:
            model.delete(name, model.by_id(name, request.path_params["id"]))
        except NotFound:
            return json({"error": f"no {name} {request.path_params['id']}"}, 404)
        return Response(status_code=204)

    async def dialect(request: Request) -> Response:
        """Switch behaviour the docs leave open (see `Dialect`); a reset restores the default."""
        body = await request.json()
        try:
            dialect = Dialect.model_validate({**simulator.api.dialect.model_dump(), **body})
            model.number_keys(dialect.numbered_keys)
            simulator.api.dialect = dialect
        except ValueError as exc:
            return json({"error": str(exc)}, 400)
        return json(simulator.api.dialect.model_dump())

    async def expire(request: Request) -> Response:
        simulator.licence.expire_all()
        return json({"expired": True})

    return [
        Route(f"{ADMIN}/records/{{entity}}", records, methods=["GET", "POST"]),
        Route(f"{ADMIN}/records/{{entity}}/{{id}}", delete, methods=["DELETE"]),
        Route(f"{ADMIN}/periods", periods, methods=["POST"]),
        Route(f"{ADMIN}/tokens/expire", expire, methods=["POST"]),
        Route(f"{ADMIN}/dialect", dialect, methods=["POST"]),
    ]
