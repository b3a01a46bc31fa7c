"""A RemoteExecutionContext as the webhook sender posts it: the SDK's DataContract JSON.

Collections are WCF key/value arrays (`[{"key": …, "value": …}]`), typed values carry `__type`
(`Entity:http://schemas.microsoft.com/xrm/2011/Contracts`, …), dates are `/Date(<ms>)/`, and the
serializer writes `/` as `\\/`, as the example in "Use WebHooks to create external handlers" shows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..core.exact_json import dumps
from .events import ColumnSet, Entity, EntityReference, Event, Money, OptionSetValue

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
EMPTY_ID = "00000000-0000-0000-0000-000000000000"


def date_value(moment: datetime) -> str:
    return f"/Date({int(moment.astimezone(UTC).timestamp() * 1000)})/"


def entity(value: Entity, typed: bool = True) -> dict:
    out = {"__type": f"Entity:{CONTRACTS}"} if typed else {}
    return out | {
        "Attributes": pairs(value.attributes),
        "EntityState": None,
        "FormattedValues": [],
        "Id": value.id or EMPTY_ID,
        "KeyAttributes": [],
        "LogicalName": value.logical,
        "RelatedEntities": [],
        "RowVersion": None,
    }


def wcf(value: Any) -> Any:
    if isinstance(value, Entity):
        return entity(value)
    if isinstance(value, EntityReference):
        return {
            "__type": f"EntityReference:{CONTRACTS}",
            "Id": value.id,
            "KeyAttributes": [],
            "LogicalName": value.logical,
            "Name": value.name,
            "RowVersion": None,
        }
    if isinstance(value, OptionSetValue):
        return {"__type": f"OptionSetValue:{CONTRACTS}", "Value": value.value}
    if isinstance(value, Money):
        return {"__type": f"Money:{CONTRACTS}", "Value": value.value}
    if isinstance(value, ColumnSet):
        columns = list(value.columns or ())
        return {
            "__type": f"ColumnSet:{CONTRACTS}",
            "AllColumns": value.columns is None,
            "AttributeExpressions": [],
            "Columns": columns,
        }
    if isinstance(value, datetime):
        return date_value(value)
    return value


def pairs(values: dict[str, Any]) -> list[dict]:
    return [{"key": key, "value": wcf(value)} for key, value in values.items()]


def context(event: Event, step: dict, org: dict, pre: dict[str, Entity], post: dict[str, Entity], at: datetime) -> dict:
    """The RemoteExecutionContext of one step's run for `event`."""
    inputs = {k: ColumnSet(v) if k == "ColumnSet" else v for k, v in event.inputs.items()}
    return {
        "BusinessUnitId": org["business_unit_id"],
        "CorrelationId": event.correlation,
        "Depth": 1,
        "InitiatingUserId": org["user_id"],
        "InputParameters": pairs(inputs),
        "IsExecutingOffline": False,
        "IsInTransaction": step.get("mode") == 0,
        "IsOfflinePlayback": False,
        "IsolationMode": 1,
        "MessageName": event.message,
        "Mode": step.get("mode") or 0,
        "OperationCreatedOn": date_value(at),
        "OperationId": step["@operation"],
        "OrganizationId": org["organization_id"],
        "OrganizationName": org["organization_name"],
        "OutputParameters": pairs(event.outputs),
        "OwningExtension": {
            "Id": step["sdkmessageprocessingstepid"],
            "KeyAttributes": [],
            "LogicalName": "sdkmessageprocessingstep",
            "Name": step.get("name"),
            "RowVersion": None,
        },
        "ParentContext": None,
        "PostEntityImages": [{"key": k, "value": entity(v, typed=False)} for k, v in post.items()],
        "PreEntityImages": [{"key": k, "value": entity(v, typed=False)} for k, v in pre.items()],
        "PrimaryEntityId": event.id,
        "PrimaryEntityName": event.entity,
        "RequestId": None,
        "SecondaryEntityName": "none",
        "SharedVariables": [],
        "Stage": step.get("stage") or 40,
        "UserId": org["user_id"],
    }


def encode(body: dict) -> bytes:
    # DataContractJsonSerializer escapes every solidus; JSON readers see the same strings.
    return dumps(body).replace(b"/", b"\\/")
