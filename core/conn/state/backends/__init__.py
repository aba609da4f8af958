"""The state backends conn ships: in memory, DuckDB files (the default) and PostgreSQL."""
