"""Dynamics 365 Finance & Operations: OData data entities, general journals posted from Looker."""
