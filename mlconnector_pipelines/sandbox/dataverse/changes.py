"""Change tracking: delta tokens and the changes since one.

A delta token is `<versionnumber>!<MM/dd/yyyy HH:mm:ss>` (the form of Microsoft's example): the
organization's row version when the tracked read began and when the token was issued. The changes
since a token are the rows whose version is newer (their whole current row) in version order,
then the tombstones newer than it; the answer is bounded by the version at its first page, so
its pages stay stable while writes go on, and the next token starts where it ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import DataverseError
from .models import DataverseModel
from .tables import TABLES

EXPIRED = DataverseError(
    400, "0x80044352", "Version stamp associated with the client has expired. Please perform a full sync."
)
INVALID = DataverseError(400, "0x80044183", "Invalid version stamp")


def issue(version: int, at: datetime) -> str:
    return f"{version}!{at.astimezone(UTC).strftime('%m/%d/%Y %H:%M:%S')}"


def parse(token: str, model: DataverseModel) -> int:
    """The token's version; an expired or malformed token is refused."""
    version_text, _, issued_text = token.partition("!")
    try:
        version = int(version_text)
        issued = datetime.strptime(issued_text, "%m/%d/%Y %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise INVALID from None
    if version > model.version:
        raise INVALID
    age = (model.now() - issued).total_seconds()
    if age > model.settings.delta_token_lifetime_seconds or version <= model.expired_through:
        raise EXPIRED
    return version


@dataclass
class Change:
    version: int
    row: dict | None  # the current row, or None for a deletion
    id: str


def changes(model: DataverseModel, entity_set: str, since: int, upto: int) -> list[Change]:
    """Rows changed in (since, upto] by version, then the deletions in that range by version."""
    key = TABLES[entity_set].key
    rows = sorted(
        (r for r in model.tables[entity_set].values() if since < r["versionnumber"] <= upto),
        key=lambda r: r["versionnumber"],
    )
    gone = [t for t in model.tombstones[entity_set] if since < t.version <= upto]
    return [Change(r["versionnumber"], r, r[key]) for r in rows] + [Change(t.version, None, t.id) for t in gone]


def after(items: list[Change], cursor: list | None) -> list[Change]:
    """The items following a page's last one: (0 = row, 1 = deletion, version) orders them."""
    if cursor is None:
        return items
    kind, version = cursor
    return [c for c in items if (c.row is None, c.version) > (bool(kind), version)]
