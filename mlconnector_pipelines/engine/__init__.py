"""Dagster-free engines: posting plans into ERPs (post.py)."""
