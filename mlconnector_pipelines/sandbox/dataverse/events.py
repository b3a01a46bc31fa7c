"""What a write tells the event pipeline: the message, its primary record and its typed parameters.

The webhook sender turns an Event into a RemoteExecutionContext (wcf.py); the parameter types here
are the SDK types that context names (Entity, EntityReference, OptionSetValue, Money, ColumnSet).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class EntityReference:
    logical: str
    id: str | None
    name: str | None = None


@dataclass(frozen=True)
class Entity:
    logical: str
    id: str | None
    attributes: dict[str, Any]  # attribute logical name -> a plain value or one of these types


@dataclass(frozen=True)
class OptionSetValue:
    value: int


@dataclass(frozen=True)
class Money:
    value: Decimal


@dataclass(frozen=True)
class ColumnSet:
    columns: tuple[str, ...] | None  # None: AllColumns


@dataclass
class Event:
    message: str  # the SDK message name a step registers for: Create, Update, Win, ...
    entity: str  # primary entity logical name
    id: str
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    pre: dict | None = None  # the stored row before (for images)
    post: dict | None = None  # the stored row after
    changed: frozenset[str] = frozenset()  # attributes the request set (Update's filtering attributes)
    correlation: str = field(default_factory=lambda: str(uuid.uuid4()))
