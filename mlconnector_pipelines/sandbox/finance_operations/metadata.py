"""A minimal `$metadata` (CSDL 4.0) of the served entity sets: keys, property types, enum types.

Enough for a client to learn which sets exist (e.g. LedgerFiscalPeriodsV2 or the older name) and
each field's type; F&O's own document has thousands of entities and annotations.
"""

from __future__ import annotations

from collections.abc import Iterable
from xml.sax.saxutils import quoteattr

from .entities import ENUMS, NAMESPACE, EntitySet


def metadata_document(sets: Iterable[EntitySet]) -> bytes:
    sets = list(sets)
    used = sorted({kind for s in sets for kind in s.fields.values() if not kind.startswith("Edm.")})
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
        "<edmx:DataServices>",
        f'<Schema Namespace="{NAMESPACE}" xmlns="http://docs.oasis-open.org/odata/ns/edm">',
    ]
    for entity in sets:
        lines.append(f"<EntityType Name={quoteattr(entity.type_name)}>")
        lines.append("<Key>" + "".join(f"<PropertyRef Name={quoteattr(k)} />" for k in entity.keys) + "</Key>")
        for name in entity.fields:
            nullable = "" if entity.fields[name] == "Edm.String" else ' Nullable="false"'
            lines.append(f"<Property Name={quoteattr(name)} Type={quoteattr(entity.edm_type(name))}{nullable} />")
        for navigation, target in entity.navigation.items():
            child = next(s for s in sets if s.name == target)
            lines.append(f'<NavigationProperty Name="{navigation}" Type="Collection({child.qualified_type})" />')
        lines.append("</EntityType>")
    for enum in used:
        lines.append(f"<EnumType Name={quoteattr(enum)}>")
        lines += [f'<Member Name="{member}" Value="{value}" />' for value, member in enumerate(ENUMS[enum])]
        lines.append("</EnumType>")
    lines.append('<EntityContainer Name="Resources">')
    for entity in sets:
        lines.append(f"<EntitySet Name={quoteattr(entity.name)} EntityType={quoteattr(entity.qualified_type)} />")
    lines += ["</EntityContainer>", "</Schema>", "</edmx:DataServices>", "</edmx:Edmx>"]
    return "\n".join(lines).encode()
