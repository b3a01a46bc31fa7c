"""A delivery's id: a digest of what it means, not of the bytes it came in.

Looker may send the same result again re-serialised (another key order, other whitespace, `1.50`
for `1.5`); each is the same delivery and must not start a second run. So the digest covers the
target asset, the scheduled plan, the field list and the rows in order, with keys sorted and every
number reduced to one exact canonical text. A string stays distinct from a number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from decimal import Decimal

import orjson


def delivery_id(target: str, scheduled_plan_id: str, fields: Sequence[str], rows: Iterable[dict]) -> str:
    digest = hashlib.sha256(orjson.dumps([target, scheduled_plan_id, list(fields)]))
    for row in rows:  # one row at a time: a large delivery is never serialised twice in memory
        digest.update(b"\n")
        digest.update(orjson.dumps(_canonical(row), option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()[:32]


def delivery_id_after(content_id: str, previous_id: str) -> str:
    """The id of a delivery that carries what an earlier, not the last, delivery for its asset carried."""
    return hashlib.sha256(f"{content_id} after {previous_id}".encode()).hexdigest()[:32]


def _canonical(value):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value  # bool before int: true is not the number 1
    if isinstance(value, (int, Decimal, float)):
        return orjson.Fragment(canonical_number(Decimal(repr(value)) if isinstance(value, float) else Decimal(value)))
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return str(value)


def canonical_number(number: Decimal) -> bytes:
    """One text per value: 1.5, 1.50 and 15E-1 are all `15e-1`; 100 and 1E+2 are `1e2`; 0 and -0.00 are `0`.

    Trailing zeros are stripped by hand rather than with Decimal.normalize(), which rounds to the
    context's 28 digits.
    """
    if not number.is_finite():
        return str(number).encode()  # not from JSON (its parser refuses NaN), but hashable all the same
    if not number:
        return b"0"
    sign, digits, exponent = number.as_tuple()
    text = "".join(map(str, digits))
    significant = text.rstrip("0")
    exponent += len(text) - len(significant)
    return f"{'-' if sign else ''}{significant}e{exponent}".encode()
