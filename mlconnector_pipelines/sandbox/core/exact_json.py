"""JSON bodies whose amounts are written with every digit, as a real ERP's are.

Amounts are held as Decimal; orjson writes each as the number it states (no float on the way),
so a client that parses a body as binary floats loses digits here exactly as it would against a
real server.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import Response


def _number(value: Any) -> orjson.Fragment:
    if isinstance(value, Decimal):
        return orjson.Fragment(format(value, "f").encode())
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(body: Any) -> bytes:
    return orjson.dumps(body, default=_number)


def json_response(
    body: Any, status_code: int = 200, media_type: str = "application/json", headers: dict | None = None
) -> Response:
    return Response(dumps(body), status_code=status_code, media_type=media_type, headers=headers)
