"""The pricing engine's arithmetic: line amounts and the header totals recalculated from the lines.

Money columns keep the currency's precision (4 places here) and are stored, as Dataverse stores
them, as decimal(23,10); quantities keep the Decimal column's 5 places. Everything stays Decimal.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal

ZERO = Decimal(0)
_MONEY = Decimal("0.0001")
_QUANTITY = Decimal("0.00001")
_STORED = Decimal("1E-10")


def money(value) -> Decimal | None:
    """A Money column's value as stored: rounded to the currency precision, written with 10 places."""
    if value is None:
        return None
    return Decimal(value).quantize(_MONEY, rounding=ROUND_HALF_EVEN).quantize(_STORED)


def decimal(value) -> Decimal | None:
    if value is None:
        return None
    return Decimal(value).quantize(_QUANTITY, rounding=ROUND_HALF_EVEN).quantize(_STORED)


def line_amounts(line: dict, volume_per_unit: bool = False) -> dict:
    """baseamount = price × quantity; extendedamount = baseamount − discounts + tax (the volume discount once,
    or once per unit)."""
    quantity = line.get("quantity") or ZERO
    base = money((line.get("priceperunit") or ZERO) * quantity)
    volume = (line.get("volumediscountamount") or ZERO) * (quantity if volume_per_unit else 1)
    discounts = (line.get("manualdiscountamount") or ZERO) + volume
    return {"baseamount": base, "extendedamount": money(base - discounts + (line.get("tax") or ZERO))}


def header_totals(header: dict, lines: Iterable[dict]) -> dict:
    """Totals of a quote, order or invoice from its lines (the header discount and freight on top)."""
    lines = list(lines)
    tax = sum((line.get("tax") or ZERO for line in lines), ZERO)
    detail = sum((line.get("extendedamount") or ZERO for line in lines), ZERO) - tax
    discount = header.get("discountamount") or ZERO
    less_freight = detail - discount
    return {
        "totallineitemamount": money(detail),
        "totaldiscountamount": money(discount),
        "totalamountlessfreight": money(less_freight),
        "totaltax": money(tax),
        "totalamount": money(less_freight + (header.get("freightamount") or ZERO) + tax),
    }
