"""What a windowed source entity is, whatever the system: the shape every catalog fills in."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..warehouse.schema import ColumnType


@dataclass(frozen=True)
class ChildEntity:
    """Lines that arrive inside their parent record, stored in their own table."""

    navigation: str  # the field of the parent that holds the lines
    table: str
    description: str
    key: str = "id"  # unique within one parent
    types: dict[str, ColumnType] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceEntity:
    entity_set: str
    table: str
    description: str
    types: dict[str, ColumnType]
    children: tuple[ChildEntity, ...] = ()
    key: str = "id"
    modified_field: str = "lastModifiedDateTime"  # an ISO timestamp in every record the client yields
