"""The sandbox's own API for Dataverse (beside the base's faults, state and reset).

`records/{set}` reads rows as stored (exact decimals) or upserts one raw; `delta-tokens/expire`
ends every delta token issued so far; `deliveries` lists webhook attempts; `actions/{name}` is a
sales rep winning an opportunity, converting a quote or editing an account.
"""

from __future__ import annotations

import json
import random
from decimal import Decimal

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core.exact_json import json_response
from .errors import DataverseError
from .reps import ACTIONS
from .tables import TABLES

ADMIN = "/_sandbox/dataverse"
DIALECT = (
    "amounts_written",
    "change_tracking",
    "delta_pages",
    "links",
    "volume_discount",
)  # settings a test may switch while the sandbox runs


def admin_routes(simulator) -> list[Route]:
    model = simulator.model
    rng = random.Random(simulator.settings.seed + 13)

    async def records(request: Request) -> Response:
        entity_set = request.path_params["entity_set"]
        if entity_set not in TABLES:
            return json_response({"error": f"no entity set {entity_set}"}, status_code=404)
        if request.method == "GET":
            rows = [
                {k: v for k, v in r.items() if k != "@lookup"} | _targets(r) for r in model.tables[entity_set].values()
            ]
            return json_response(sorted(rows, key=lambda r: r["versionnumber"]))
        body = json.loads(await request.body() or b"{}", parse_float=Decimal)
        record = body.get("record", body)
        row = model.upsert_raw(entity_set, record, body.get("modifiedon"))
        return json_response({k: v for k, v in row.items() if k != "@lookup"} | _targets(row))

    async def expire(request: Request) -> Response:
        return json_response({"expired_through_version": model.expire_delta_tokens()})

    async def dialect(request: Request) -> Response:
        """The other readings of the protocol a test can switch on (reset restores the configured ones)."""
        if request.method == "POST":
            changes = json.loads(await request.body() or b"{}")
            unknown = sorted(set(changes) - set(DIALECT))
            if unknown:
                return json_response({"error": f"dialect switches are {sorted(DIALECT)}"}, status_code=400)
            for name, value in (
                type(simulator.settings)
                .model_validate(simulator.settings.model_dump() | changes)
                .model_dump(include=set(changes))
                .items()
            ):
                setattr(simulator.settings, name, value)
        return json_response(simulator.settings.model_dump(include=set(DIALECT)))

    async def deliveries(request: Request) -> Response:
        return json_response(list(simulator.webhooks.deliveries))

    async def action(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ACTIONS:
            return json_response({"error": f"actions are {sorted(ACTIONS)}"}, status_code=404)
        body = json.loads(await request.body() or b"{}", parse_float=Decimal)
        args = {k: v for k, v in body.items() if k in ("opportunity_id", "quote_id", "account_id", "changes")}
        try:
            row = ACTIONS[name](model, rng, **args)
        except DataverseError as exc:
            return json_response(exc.body(), status_code=exc.status)
        return json_response({k: v for k, v in row.items() if k != "@lookup"} | _targets(row))

    return [
        Route(f"{ADMIN}/records/{{entity_set}}", records, methods=["GET", "POST"]),
        Route(f"{ADMIN}/delta-tokens/expire", expire, methods=["POST"]),
        Route(f"{ADMIN}/deliveries", deliveries),
        Route(f"{ADMIN}/dialect", dialect, methods=["GET", "POST"]),
        Route(f"{ADMIN}/actions/{{name}}", action, methods=["POST"]),
    ]


def _targets(row: dict) -> dict:
    """Each lookup's target table, as the Web API's lookuplogicalname annotation names it."""
    return {
        f"_{attr}_value@Microsoft.Dynamics.CRM.lookuplogicalname": target
        for attr, target in row.get("@lookup", {}).items()
        if target
    }
