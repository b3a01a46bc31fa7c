"""HTTP answers in Dataverse's shape: JSON with `OData-Version: 4.0`, errors as `{"error": {code, message}}`."""

from __future__ import annotations

from starlette.responses import Response

from ..core.exact_json import dumps
from .errors import DataverseError

JSON = "application/json; odata.metadata=minimal"


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(
        dumps(body), status_code=status, media_type=JSON, headers={"OData-Version": "4.0", **(headers or {})}
    )


def empty(status: int = 204, headers: dict | None = None) -> Response:
    return Response(status_code=status, headers={"OData-Version": "4.0", **(headers or {})})


def error_response(error: DataverseError) -> Response:
    return json_response(error.body(), error.status, error.headers)
