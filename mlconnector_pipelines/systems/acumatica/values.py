"""Acumatica's wrapped values, in one place: every field travels as `{"value": …}` both ways.

`wrap` is the only way a record leaves the client, so an unwrapped value never reaches the server
(it would answer 400). Answers are unwrapped as Python records (`unwrap`), decoded by type into the
few fields a caller reads (`WrappedText`, `WrappedAmount` in a msgspec Struct: a 5,000-line batch's
answer in ~7 ms, where parsing and unwrapping it all takes ~37), or, for pages read into Arrow, column
by column in C++ (`unwrap_table`). Amounts stay Decimal / exact decimal columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

# Record fields that are not values: the record's identity and bookkeeping.
SYSTEM_FIELDS = frozenset({"id", "rowNumber", "note", "custom", "_links", "files", "error", "delete"})
_NOT_VALUES = frozenset({"_links", "custom", "files"})  # dropped from an unwrapped answer
_SCALARS = frozenset({str, int, float, bool, Decimal, type(None)})  # wrapped as they are


def wrap(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record as Acumatica takes it: each value `{"value": v}`, detail lists wrapped line by line."""
    wrapped: dict[str, Any] = {}
    for name, value in record.items():
        if name in SYSTEM_FIELDS:
            wrapped[name] = value
        elif type(value) in _SCALARS:  # most fields, without the ABC checks below (half the time of a big batch)
            wrapped[name] = {"value": value}
        elif isinstance(value, list):
            wrapped[name] = [wrap(line) for line in value]
        elif isinstance(value, Mapping):
            raise TypeError(f"{name}: give plain values; wrap() wraps them (got a mapping)")
        else:
            wrapped[name] = {"value": value}
    return wrapped


def plain_value(field: Any) -> Any:
    """One field of an answer as a plain value: `{"value": v}` is v, an empty object (a field with no value)
    None; anything else (an id, a linked entity) as it came.

    Answers are parsed JSON, whose objects are dicts: `type(field) is dict` rather than an ABC
    `isinstance(field, Mapping)` quarters the time to unwrap a large answer."""
    if type(field) is dict:
        if "value" in field:
            return field["value"]
        if not field:
            return None
    return field


def unwrap(record: Mapping[str, Any]) -> dict[str, Any]:
    """An answer's record with plain values; a field's `error` (a refused value) is kept as `<field>.error`."""
    plain: dict[str, Any] = {}
    for name, value in record.items():
        if name in _NOT_VALUES:
            continue
        if type(value) is list:
            plain[name] = [unwrap(line) if type(line) is dict else line for line in value]
            continue
        error = value.get("error") if type(value) is dict else None
        if not error or "value" in value:  # a refused field with no value left keeps only its error
            plain[name] = plain_value(value)
        if error:
            plain[f"{name}.error"] = error
    return plain


class WrappedText(msgspec.Struct, frozen=True):
    """A text field of an answer decoded by type: `{"value": "…"}`, or `{}` for none. A code that comes
    as a number reads as its digits."""

    value: str | int | None = None

    @property
    def text(self) -> str:
        return "" if self.value is None else str(self.value)


class WrappedAmount(msgspec.Struct, frozen=True):
    """An amount field decoded by type: the JSON number (or string) goes straight into a Decimal, never
    through a binary float."""

    value: Decimal | None = None


def field_errors(record: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every `error` Acumatica put on a field of the record (or of a detail line), as `Field: message`."""
    errors = []
    if isinstance(record.get("error"), str) and record["error"]:
        errors.append(f"{prefix.rstrip('.') or 'record'}: {record['error']}")
    for name, value in record.items():
        if isinstance(value, Mapping) and value.get("error"):
            errors.append(f"{prefix}{name}: {value['error']}")
        elif isinstance(value, list):
            for number, line in enumerate(value, start=1):
                if isinstance(line, Mapping):
                    errors += field_errors(line, f"{prefix}{name}[{number}].")
    return errors


def unwrap_table(table: pa.Table) -> pa.Table:
    """Columns read as struct<value: T> become T; detail lists of such structs become lists of T rows.

    A field no record on the page has a value for arrives as `{}` (a struct with no fields): it becomes a
    column of Arrow's null type, which the warehouse types by the field's first value (a later page's, or
    the catalog's declared type); made text, an amount or date first seen empty stayed text for good.
    Linked entities (objects of fields, only there when expanded) are left out.
    """
    return _unwrap_fields(table.column_names, [c.combine_chunks() for c in table.columns], pa.table)


def _unwrap_fields(names, arrays, build):
    columns, kept = [], []
    for name, array in zip(names, arrays, strict=True):
        if name in ("_links", "custom", "files"):
            continue
        unwrapped = _unwrap_array(array)
        if unwrapped is not None:
            columns.append(unwrapped)
            kept.append(name)
    return build(columns, names=kept)


def _unwrap_array(array: pa.Array) -> pa.Array | None:
    kind = array.type
    if pa.types.is_struct(kind):
        if kind.get_field_index("value") >= 0:
            return pc.struct_field(array, "value")
        if kind.num_fields == 0:
            return pa.nulls(len(array))
        return None  # a linked entity
    if pa.types.is_list(kind) and pa.types.is_struct(kind.value_type):
        lines = array.values
        names = [kind.value_type.field(i).name for i in range(kind.value_type.num_fields)]
        unwrapped = _unwrap_fields(names, [pc.struct_field(lines, name) for name in names], pa.StructArray.from_arrays)
        return pa.ListArray.from_arrays(array.offsets, unwrapped, mask=array.is_null())
    return array
