"""Looker API 4.0: read-only queries, Looks and query tasks."""
