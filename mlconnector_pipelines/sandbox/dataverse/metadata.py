"""A small CSDL `$metadata`: entity types, entity sets, and the change-tracking annotation on tracked sets."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from .tables import NAMESPACE, TABLES


def document(tracked: set[str]) -> bytes:
    types, sets = [], []
    for table in TABLES.values():
        props = "".join(
            f"<Property Name={quoteattr(name)} Type={quoteattr(edm)} />" for name, edm in table.properties.items()
        )
        navs = "".join(
            f'<NavigationProperty Name="{nav}" Type="{NAMESPACE}.{lookup.target_of(nav)}" />'
            for nav, lookup in table.navigation.items()
        )
        navs += "".join(
            f'<NavigationProperty Name="{lines.navigation}" Type="Collection({NAMESPACE}.{TABLES[lines.child_set].logical})" />'
            for lines in table.collections
        )
        types.append(
            f'<EntityType Name="{table.logical}"><Key><PropertyRef Name="{table.key}" /></Key>{props}{navs}</EntityType>'
        )
        tracking = (
            '<Annotation Term="Org.OData.Capabilities.V1.ChangeTracking"><Record>'
            '<PropertyValue Property="Supported" Bool="true" /></Record></Annotation>'
            if table.entity_set in tracked
            else ""
        )
        sets.append(
            f'<EntitySet Name="{table.entity_set}" EntityType="{NAMESPACE}.{table.logical}">{tracking}</EntitySet>'
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices>'
        f'<Schema Namespace="{NAMESPACE}" Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">'
        f'{"".join(types)}<EntityContainer Name="System">{"".join(sets)}</EntityContainer>'
        "</Schema></edmx:DataServices></edmx:Edmx>"
    ).encode()
