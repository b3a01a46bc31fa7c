"""What a windowed source entity is, whatever the system: the shape every catalog fills in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from .errors import ConfigError
from .types import DECIMAL_READ_TYPE, ColumnType


@dataclass(frozen=True)
class Reference:
    """A field naming a record of another entity of the same system and company (a line's account)."""

    column: str  # the source field holding the reference, e.g. "accountId"
    entity_set: str  # the entity referred to, e.g. "accounts"
    field: str = "id"  # the field of that entity it matches (its key, or another unique field)


@dataclass(frozen=True)
class ChildEntity:
    """Lines that arrive inside their parent record, stored in their own table."""

    navigation: str  # the field of the parent that holds the lines
    table: str
    description: str
    key: str = "id"  # unique within one parent
    types: dict[str, ColumnType] = field(default_factory=dict)
    references: tuple[Reference, ...] = ()


@dataclass(frozen=True)
class SourceEntity:
    entity_set: str
    table: str
    description: str
    types: dict[str, ColumnType]
    children: tuple[ChildEntity, ...] = ()
    key: str = "id"
    modified_field: str = "lastModifiedDateTime"  # an ISO timestamp in every record the client yields
    # False where the source never deletes a record (posted ledger entries are reversed, not removed):
    # reconciling deletions would compare millions of keys to find none.
    deletable: bool = True
    references: tuple[Reference, ...] = ()  # what LookML explores join (lookml/project.py)

    def read_fields(self, text_fields: Sequence[str] = ()) -> list[pa.Field]:
        """The fields a page reader must not leave to type inference: amounts (read exactly, see
        core.types), the given text fields (kept as sent), and the amounts of nested lines."""
        fields = [pa.field(name, pa.string()) for name in text_fields]
        fields += _decimal_fields(self.types, skip=set(text_fields))
        for child in self.children:
            lines = _decimal_fields(child.types)
            if lines:
                fields.append(pa.field(child.navigation, pa.list_(pa.struct(lines))))
        return fields


def _decimal_fields(types: dict[str, ColumnType], skip: set[str] = frozenset()) -> list[pa.Field]:
    return [
        pa.field(name, DECIMAL_READ_TYPE)
        for name, kind in types.items()
        if kind is ColumnType.DECIMAL and name not in skip
    ]


def select_entities(
    catalog: Sequence[SourceEntity], entity_sets: list[str] | None, config_key: str
) -> tuple[SourceEntity, ...]:
    """The configured subset of a catalog (all by default); an unknown name is a configuration error."""
    if entity_sets is None:
        return tuple(catalog)
    by_name = {e.entity_set: e for e in catalog}
    unknown = [name for name in entity_sets if name not in by_name]
    if unknown:
        raise ConfigError(f"{config_key}: unknown entity set(s) {unknown}; supported: {sorted(by_name)}")
    return tuple(by_name[name] for name in entity_sets)
