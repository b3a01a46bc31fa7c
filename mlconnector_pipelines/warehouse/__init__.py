"""One Warehouse interface; DuckDB is the embedded default."""
