"""conn source plugin for DuckDB files (entry point module: :mod:`conn_source_duckdb.plugin`)."""

__version__ = "0.1.0"
