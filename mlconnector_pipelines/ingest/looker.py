"""Looker scheduled-plan deliveries (api-notes §7): validate the payload, turn its attachment into rows.

Looker signs nothing; the receiver's URL carries a secret instead. A delivery is accepted only
if it is well formed and names a scheduled plan that a configured Looker asset takes.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

import orjson

from ..config import LookerQueryConfig
from .store import Delivery

MAX_BODY_BYTES = 200 * 1024 * 1024


class DeliveryRejected(Exception):
    """The payload cannot be used: (HTTP status, reason). Nothing is stored."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def parse_delivery(body: bytes, plans: dict[str, LookerQueryConfig]) -> Delivery:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DeliveryRejected(400, f"the body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise DeliveryRejected(400, "the body must be a JSON object (Looker's webhook payload)")
    plan = payload.get("scheduled_plan")
    if not isinstance(plan, dict) or plan.get("scheduled_plan_id") in (None, ""):
        raise DeliveryRejected(400, "scheduled_plan.scheduled_plan_id is missing")
    plan_id = str(plan["scheduled_plan_id"])
    attachment = payload.get("attachment")
    if not isinstance(attachment, dict) or not isinstance(attachment.get("data"), str):
        raise DeliveryRejected(400, "attachment.data is missing: schedule the delivery with the csv or json format "
                                    "(Looker sends the data inline)")
    mimetype = str(attachment.get("mimetype") or "").lower()
    if mimetype.endswith(";base64"):
        raise DeliveryRejected(400, f"attachment is {mimetype}: a binary format carries no rows; "
                                    "schedule csv or json")
    query = plans.get(plan_id)
    if query is None:
        raise DeliveryRejected(422, f"no Looker asset in connector.yaml takes scheduled plan {plan_id} "
                                    "(set scheduled_plan_id on one of looker.queries)")
    plan_query = plan.get("query") if isinstance(plan.get("query"), dict) else {}
    fields = [str(f) for f in (plan_query.get("fields") or query.fields)]
    if mimetype.startswith("text/csv") or attachment.get("extension") == "csv":
        rows = _csv_rows(attachment["data"], fields)
    elif "json" in mimetype or attachment.get("extension") in ("json", "json_detail"):
        rows = _json_rows(attachment["data"], fields)
    else:
        raise DeliveryRejected(400, f"attachment mimetype {mimetype or '(none)'} is neither text/csv nor "
                                    "application/json")
    return Delivery(id=Delivery.id_of(body), source="looker", target=query.name,
                    received_at=datetime.now(timezone.utc).isoformat(),
                    detail={"scheduled_plan_id": plan_id, "title": plan.get("title"), "type": payload.get("type"),
                            "mimetype": mimetype, "fields": fields},
                    rows=rows)


def _csv_rows(text: str, fields: list[str]) -> list[dict]:
    """Looker's csv header holds labels, not field names: columns map to the query's fields in order."""
    if not fields:
        raise DeliveryRejected(400, "a csv delivery needs the query's fields to name its columns: the payload has "
                                    "no scheduled_plan.query.fields and the asset configures none")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise DeliveryRejected(400, "the csv attachment is empty (not even a header row)")
    if len(header) != len(fields):
        raise DeliveryRejected(400, f"the csv has {len(header)} column(s) but the query selects {len(fields)} "
                                    f"field(s) ({', '.join(fields)})")
    rows = []
    for number, values in enumerate(reader, start=2):
        if len(values) != len(fields):
            raise DeliveryRejected(400, f"csv line {number} has {len(values)} value(s), expected {len(fields)}")
        rows.append({f: (v if v != "" else None) for f, v in zip(fields, values)})
    return rows


def _json_rows(text: str, fields: list[str]) -> list[dict]:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise DeliveryRejected(400, f"the json attachment is not JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):  # json_detail: {field: {"value": ...}}
        data = [{k: (v.get("value") if isinstance(v, dict) else v) for k, v in row.items()}
                for row in data["data"] if isinstance(row, dict)]
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise DeliveryRejected(400, "the json attachment must be a list of rows (objects keyed by field name)")
    if fields:
        for number, row in enumerate(data, start=1):
            unknown = sorted(set(row) - set(fields))
            if unknown:
                raise DeliveryRejected(400, f"row {number} has field(s) {', '.join(unknown)} the query does not "
                                            f"select ({', '.join(fields)})")
    return data
