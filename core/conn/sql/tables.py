"""Preparing a destination table for a write: one skeleton for every SQL dialect."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conn.errors import ConfigError
from conn.sql.writing import (
    check_column_types,
    fields_to_write,
    missing_columns_error,
    missing_table_error,
    require_unique_key,
)

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class Table:
    """A table as its database describes it: ``columns`` (name -> declared type) and
    ``unique``, the columns a primary key or unique index covers alone."""

    columns: Mapping[str, str]
    unique: Collection[str] = ()


def prepare_table(name: str, schema: pa.Schema, key: str, operation: str, *,
                  options: Mapping[str, Any], instance: str,
                  describe: Callable[[bool], Table | None],
                  create: Callable[[pa.Schema, str], None],
                  add_columns: Callable[[list[pa.Field]], None],
                  families: tuple[Callable[[str], str], Callable[[pa.Field], str]]
                  | None = None,
                  compatible: Collection[set[str]] = (), unique_hint: str = "",
                  shown: str | None = None) -> Table | None:
    """Make table ``name`` ready for a write of ``schema`` by ``operation`` on ``key``
    and return it as it then is (None: a delete from a table that does not exist, so
    nothing to do). In order:

    1. a missing table is created (``create(schema, primary_key)``: the configured
       ``key`` or the match key) when ``options["create_table"]`` allows it, else a
       :class:`~conn.errors.ConfigError`;
    2. columns the write needs and the table lacks are added (``add_columns``) when
       ``options["evolve"]`` allows it, else a ConfigError listing them (a delete needs
       only the key column);
    3. with ``families`` (the dialect's ``column_family(type)`` and
       ``field_family(field)``), values the columns cannot hold are refused (see
       :func:`check_column_types`, with ``compatible`` pairs);
    4. an upsert needs a primary key or unique index on ``key`` alone (``unique_hint``
       tells how to add one).

    ``describe(fresh)`` reads the table (``fresh``: after a change, no cached catalog);
    ``options`` are the table's :func:`~conn.sql.table_options`; ``shown`` is the name
    as messages give it (default ``'name'``).
    """
    shown = shown or repr(name)
    table = describe(False) or describe(True)
    if table is None:
        if operation == "delete":
            return None
        if not options.get("create_table"):
            raise missing_table_error(shown, instance)
        primary = options.get("key") or key
        if primary not in schema.names:
            raise ConfigError(f"cannot create table {shown}: the batch has no key column "
                              f"{primary!r}")
        create(schema, primary)
        table = _described(describe, shown)
    fields = fields_to_write(schema, key, operation)
    missing = [f for f in fields if f.name not in table.columns]
    if missing:
        if operation == "delete":
            raise ConfigError(f"table {shown} has no key column {key!r} to delete by")
        if not options.get("evolve"):
            raise missing_columns_error(shown, missing)
        add_columns(missing)
        table = _described(describe, shown)
    if families is not None:
        check_column_types(shown, fields, table.columns, families[0], families[1],
                           compatible)
    if operation == "upsert":
        require_unique_key(shown, key, table.unique, unique_hint)
    return table


def _described(describe: Callable[[bool], Table | None], shown: str) -> Table:
    table = describe(True)
    if table is None:
        raise ConfigError(f"table {shown} is missing right after it was created")
    return table
