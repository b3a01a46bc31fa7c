"""JSON whose numbers stay exact: amounts are read as Decimal, never binary floats, and written back digit
for digit.

orjson (fast, used for the webhook envelope) reads `12345678901.234567891` as the nearest double,
`12345678901.234567168`. Delivered rows are parsed here instead, and stored the same way, so what the
asset loads is what Looker sent.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson

# Beyond what any warehouse column holds (DECIMAL(38, 9), doubles up to ~1e308); refusing such numbers
# also keeps a hostile `1e999999999` from being expanded into a billion digits downstream.
_MAX_ADJUSTED_EXPONENT = 400
# orjson writes integers only up to 64 bits; longer ones are kept as Decimal (written digit for digit).
_INT64_SAFE_DIGITS = 18


def loads(text: str | bytes | bytearray) -> Any:
    """Parse JSON: non-integral numbers become Decimal, integers int (Decimal past 64 bits).

    Raises ValueError (json.JSONDecodeError for syntax) for malformed JSON, NaN/Infinity and
    out-of-range numbers.
    """
    return json.loads(text, parse_float=_decimal, parse_int=_integer, parse_constant=_no_constant)


def dumps(value: Any) -> bytes:
    """Serialise with orjson, writing each Decimal as the JSON number it states (no float in between)."""
    return orjson.dumps(value, default=_number_text)


def _decimal(text: str) -> Decimal:
    number = Decimal(text)
    if number and abs(number.adjusted()) > _MAX_ADJUSTED_EXPONENT:
        raise ValueError(f"the number {text[:40]} is out of range")
    return number


def _integer(text: str) -> int | Decimal:
    digits = len(text.lstrip("-"))
    return int(text) if digits <= _INT64_SAFE_DIGITS else _decimal(text)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _number_text(value: Any) -> orjson.Fragment:
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value).encode())  # str(Decimal) is valid JSON number text, e.g. 1.5E+10
    raise TypeError(f"cannot store {type(value).__name__} {value!r} as JSON")
