"""Looker scheduled-plan deliveries (api-notes §7): validate the payload, turn its attachment into rows.

Looker signs nothing; the receiver's URL carries a secret instead. A delivery is accepted only
if it is well formed, names a scheduled plan that a configured Looker asset takes, and carries
only fields that asset selects (for a saved Look: the fields Looker says the Look has).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import orjson

from ..systems.looker.config import LookerQueryConfig
from . import exact_json
from .identity import delivery_id
from .look_fields import LookerUnavailable
from .store import Delivery

LookFieldsLookup = Callable[[str], Sequence[str]]


class DeliveryRejected(Exception):
    """The payload cannot be used: (HTTP status, reason). Nothing is stored."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def parse_delivery(
    body: bytes | bytearray,
    plans: dict[str, LookerQueryConfig],
    *,
    look_fields: LookFieldsLookup | None = None,
    received_at: datetime | None = None,
) -> Delivery:
    """The delivery in `body`, or DeliveryRejected.

    `look_fields(look_id)` gives a Look's fields (the receiver asks Looker; LookerUnavailable → 503);
    without it a Look asset's delivery is checked only against the fields its payload names.
    """
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
        raise DeliveryRejected(
            400,
            "attachment.data is missing: schedule the delivery with the csv or json format "
            "(Looker sends the data inline)",
        )
    mimetype = str(attachment.get("mimetype") or "").lower()
    if mimetype.endswith(";base64"):
        raise DeliveryRejected(400, f"attachment is {mimetype}: a binary format carries no rows; schedule csv or json")
    is_csv = mimetype.startswith("text/csv") or attachment.get("extension") == "csv"
    if not is_csv and not ("json" in mimetype or attachment.get("extension") in ("json", "json_detail")):
        raise DeliveryRejected(
            400, f"attachment mimetype {mimetype or '(none)'} is neither text/csv nor application/json"
        )
    query = plans.get(plan_id)
    if query is None:
        raise DeliveryRejected(
            422,
            f"no Looker asset in connector.yaml takes scheduled plan {plan_id} "
            "(set scheduled_plan_id on one of looker.queries)",
        )
    plan_query = plan.get("query") if isinstance(plan.get("query"), dict) else {}
    if plan_query.get("pivots"):  # a cell per pivot value, not a row per record: nothing to load as rows
        raise DeliveryRejected(
            400,
            f"scheduled plan {plan_id}'s query pivots on {', '.join(map(str, plan_query['pivots']))}: its rows hold a "
            "value per pivot column, not one per field; schedule the Look without pivots",
        )
    sent = [str(f) for f in plan_query["fields"]] if isinstance(plan_query.get("fields"), list) else []
    # Only now, with everything cheap checked, may Looker be asked (once per Look per few minutes).
    selected, selector = _selected_fields(query, look_fields)
    extra = [f for f in sent if selected and f not in selected]
    if extra:
        raise DeliveryRejected(
            400,
            f"scheduled_plan.query.fields has field(s) {', '.join(extra)} that {selector} "
            f"does not select ({', '.join(selected)})",
        )
    fields = sent or selected
    rows = _csv_rows(attachment["data"], fields) if is_csv else _json_rows(attachment["data"], fields, selector)
    return Delivery(
        id=delivery_id(query.name, plan_id, fields, rows),
        source="looker",
        target=query.name,
        received_at=(received_at or datetime.now(UTC)).isoformat(timespec="microseconds"),
        detail={
            "scheduled_plan_id": plan_id,
            "title": plan.get("title"),
            "type": payload.get("type"),
            "mimetype": mimetype,
            "fields": fields,
            # The zone the plan's query ran in (Looker's Query.query_timezone): its date-times are wall-clock there.
            "query_timezone": plan_query.get("query_timezone") or None,
            # The row limit the plan's query ran with (Looker's Query.limit): a result that reaches it was cut
            "limit": plan_query.get("limit"),
        },
        rows=rows,
    )


def _csv_rows(text: str, fields: list[str]) -> list[dict]:
    """Looker's csv header holds labels, not field names: columns map to the query's fields in order."""
    if not fields:
        raise DeliveryRejected(
            400,
            "a csv delivery needs the query's fields to name its columns: the payload has "
            "no scheduled_plan.query.fields and the asset configures none",
        )
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise DeliveryRejected(400, "the csv attachment is empty (not even a header row)")
    if len(header) != len(fields):
        raise DeliveryRejected(
            400,
            f"the csv has {len(header)} column(s) but the query selects {len(fields)} field(s) ({', '.join(fields)})",
        )
    rows = []
    for number, values in enumerate(reader, start=2):
        if len(values) != len(fields):
            raise DeliveryRejected(400, f"csv line {number} has {len(values)} value(s), expected {len(fields)}")
        rows.append({f: (v if v != "" else None) for f, v in zip(fields, values, strict=True)})
    return rows


def _selected_fields(query: LookerQueryConfig, look_fields: LookFieldsLookup | None) -> tuple[list[str], str]:
    """The fields the asset selects (none known: a Look without a lookup), and how to name it in an error."""
    if query.look_id is None:
        return list(query.fields), f"looker.queries[{query.name}]"
    if look_fields is None:
        return [], "the query"
    try:
        return list(look_fields(query.look_id)), f"Look {query.look_id}"
    except LookerUnavailable as exc:  # the sender retries a 503; nothing is stored meanwhile
        raise DeliveryRejected(
            503, f"{exc}; the delivery cannot be checked now and was not stored: send it again later"
        ) from None


_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _refuse_lone_surrogates(rows: list[dict]) -> None:
    """A value holding half of a UTF-16 pair (a database string cut inside an emoji) is no text any store keeps:
    it failed the receiver with a bare 500 on every retry. Refused, naming the row and field."""
    for number, row in enumerate(rows, start=1):
        for field, value in row.items():
            if isinstance(value, str):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise DeliveryRejected(
                        400,
                        f"row {number}: {field} holds text that is not valid Unicode (half of a UTF-16 surrogate "
                        "pair, as a value cut inside an emoji): nothing was stored; correct it at the source",
                    ) from None


def _json_rows(text: str, fields: list[str], selector: str) -> list[dict]:
    try:
        data = exact_json.loads(text)  # amounts as Decimal, digit for digit
    except (ValueError, RecursionError) as exc:
        raise DeliveryRejected(400, f"the json attachment is not JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):  # json_detail: {field: {"value": ...}}
        data = [
            {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in row.items()}
            for row in data["data"]
            if isinstance(row, dict)
        ]
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise DeliveryRejected(400, "the json attachment must be a list of rows (objects keyed by field name)")
    if _ESCAPED_SURROGATE.search(text):  # (cheap on the text; the rows are walked only to name the one)
        _refuse_lone_surrogates(data)
    for number, row in enumerate(data, start=1):
        nested = sorted(k for k, v in row.items() if isinstance(v, dict))
        if nested:  # a pivoted measure: a value per pivot column (json_detail `{pivot: {value}}`, json `{pivot: v}`)
            raise DeliveryRejected(
                400,
                f"row {number}: field(s) {', '.join(nested)} hold a value per pivot column, not one value: the query "
                "is pivoted; schedule the Look without pivots",
            )
    if fields:
        for number, row in enumerate(data, start=1):
            unknown = sorted(set(row) - set(fields))
            if unknown:
                raise DeliveryRejected(
                    400,
                    f"row {number} has field(s) {', '.join(unknown)} that {selector} does "
                    f"not select ({', '.join(fields)})",
                )
    return data
