"""Database-independent helpers for SQL source and destination plugins.

Pure Python (pyarrow is imported only by the functions that need it, and no database
driver ever): a lazily opened connection with the catalog query and check every connector
runs, identifier quoting, the config-schema fragments every SQL plugin shares, stream
selection and cursor bookmarks for sources, and for destinations the per-table options,
object description, one table-preparation skeleton (create, evolve, type check, unique
key: :func:`prepare_table`), column types from a table of rules (:func:`column_type`) and
the per-row savepoint replay that pins a failed batch on its bad rows. Dialect-specific
SQL, type tables and driver error classification stay in the plugins and are passed in.
"""

from __future__ import annotations

from conn.sql.connection import LazyConnection
from conn.sql.identifiers import quote_ident
from conn.sql.reading import (
    check_query_key,
    default_bookmark,
    incremental_query,
    select_tables,
    stream_options,
    with_bookmarks,
)
from conn.sql.settings import destination_properties, source_properties, table_options
from conn.sql.tables import Table, prepare_table
from conn.sql.types import SQL_TYPE_KEY, TypeRule, column_type, sql_type_tag
from conn.sql.writing import (
    check_column_types,
    dml,
    fields_to_write,
    missing_columns_error,
    missing_table_error,
    object_fields,
    object_identifiers,
    replay_row_by_row,
    require_unique_key,
    set_columns,
)

__all__ = [
    "SQL_TYPE_KEY",
    "LazyConnection",
    "Table",
    "TypeRule",
    "check_column_types",
    "check_query_key",
    "column_type",
    "default_bookmark",
    "destination_properties",
    "dml",
    "fields_to_write",
    "incremental_query",
    "missing_columns_error",
    "missing_table_error",
    "object_fields",
    "object_identifiers",
    "prepare_table",
    "quote_ident",
    "replay_row_by_row",
    "require_unique_key",
    "select_tables",
    "set_columns",
    "source_properties",
    "sql_type_tag",
    "stream_options",
    "table_options",
    "with_bookmarks",
]
