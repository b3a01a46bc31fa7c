"""Thin Dagster wiring per flow: assets, jobs, schedules, checks."""
