"""ml-connector pipelines: a Dagster code location for finance data between ERPs, a warehouse and Looker."""

from .core.memory import configure_process_memory

configure_process_memory()  # before anything imports pyarrow; see core/memory.py
