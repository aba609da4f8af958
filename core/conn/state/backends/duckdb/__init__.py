"""The embedded default state backend: one DuckDB file per sync (see :mod:`.store`)."""
