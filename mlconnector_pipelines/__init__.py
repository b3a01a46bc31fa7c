"""ml-connector pipelines: a Dagster code location for finance data between ERPs, a warehouse and Looker."""
