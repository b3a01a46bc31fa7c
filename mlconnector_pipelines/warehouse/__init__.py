"""One Warehouse interface; DuckDB is the embedded default."""

# DuckDB's budget per connection (it spills to disk beyond it): keeps a step of 1M G/L entries
# under 500 MB (bench/bc_throughput.py). connector.yaml's warehouse.duckdb_memory_limit overrides it.
DUCKDB_DEFAULT_MEMORY_LIMIT = "128MB"
