"""Logical column types, and how amounts stay exact from a JSON body to a DECIMAL column.

JSON numbers are text: `12345678901.234567891` is exact as written and is not a binary float.
Amount fields are therefore never read as doubles. Arrow's JSON reader parses them into
`DECIMAL_READ_TYPE`, wide enough for any literal a finance API sends (38 digits either side of
the point, as a number or as a string), and `exact_decimals` then rounds them once, half away
from zero, to the warehouse's `DECIMAL(38, 9)`.
"""

from __future__ import annotations

from enum import Enum

import pyarrow as pa
import pyarrow.compute as pc


class ColumnType(str, Enum):
    STRING = "string"
    INTEGER = "integer"
    DECIMAL = "decimal"  # money: exact, 38 digits with 9 after the point
    DOUBLE = "double"
    BOOLEAN = "boolean"
    DATE = "date"
    TIMESTAMP = "timestamp"  # always UTC


DECIMAL_SCALE = 9
DECIMAL_TYPE = pa.decimal128(38, DECIMAL_SCALE)  # what a ColumnType.DECIMAL column holds
DECIMAL_READ_TYPE = pa.decimal256(76, 38)


def exact_decimals(table: pa.Table) -> pa.Table:
    """Every column read as DECIMAL_READ_TYPE, rounded to DECIMAL_TYPE.

    Raises ValueError naming the column when a value has more than 29 digits before the point.
    """
    for index, field in enumerate(table.schema):
        if field.type != DECIMAL_READ_TYPE:
            continue
        rounded = pc.round(table.column(index), DECIMAL_SCALE, round_mode="half_towards_infinity")
        try:
            table = table.set_column(index, field.name, pc.cast(rounded, DECIMAL_TYPE))
        except pa.ArrowInvalid as exc:
            raise ValueError(f"{field.name}: a value does not fit DECIMAL(38, 9) ({exc})") from None
    return table
