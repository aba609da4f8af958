"""Helpers for SQL destinations: describing tables as objects, checking a batch against
its table, simple DML and the per-row savepoint replay of a failed batch."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from conn.destination import Rejection
from conn.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

#: Name of the savepoint each replayed row runs in.
SAVEPOINT = "conn_row"


# --- objects ------------------------------------------------------------------------------


def object_identifiers(key: str | None, unique: Iterable[str],
                       columns: Iterable[str]) -> list[str]:
    """A table's identifiers (possible match keys): the configured ``key`` first, then
    the columns a primary key or unique index covers alone; a table with neither lets
    any of its ``columns`` match (update, delete, append)."""
    idents = [key] if key else []
    idents += [c for c in unique if c not in idents]
    if not idents:
        idents = list(columns)
    return idents


def object_fields(properties: Mapping[str, Any], identifiers: Iterable[str], *,
                  open_: bool) -> dict[str, Any]:
    """The JSON Schema of a table object: its columns' ``properties``, every identifier
    among them, and more properties allowed when ``open_`` (evolving or not yet
    created tables)."""
    props = dict(properties)
    for ident in identifiers:
        props.setdefault(ident, {})
    return {"type": "object", "properties": props, "additionalProperties": bool(open_)}


# --- checks -------------------------------------------------------------------------------


def fields_to_write(schema: pa.Schema, key: str, operation: str) -> list[pa.Field]:
    """The fields a write touches: the key alone for ``delete``, else every field."""
    return [schema.field(key)] if operation == "delete" else list(schema)


def missing_table_error(table: str, instance: str) -> ConfigError:
    """The error for writing to a table that does not exist without ``create_table``
    (``table`` as it should read in the message)."""
    return ConfigError(f"table {table} does not exist; create it or set "
                       f"create_table: true for destination {instance!r}")


def missing_columns_error(table: str, missing: Iterable[pa.Field],
                          suffix: str = "") -> ConfigError:
    """The error for a batch holding columns its table lacks, without ``evolve``."""
    return ConfigError(
        f"table {table} has no column(s) {', '.join(repr(f.name) for f in missing)}"
        f"; add them, leave them out of the mapping, or set evolve: true{suffix}")


def check_column_types(table: str, fields: Iterable[pa.Field], columns: Mapping[str, str],
                       column_family: Callable[[str], str],
                       field_family: Callable[[pa.Field], str],
                       compatible: Collection[set[str]] = ()) -> None:
    """Refuse a batch whose values the table's columns cannot hold.

    Types are compared by coarse family (the dialect's ``column_family`` of a column type
    and ``field_family`` of an Arrow field): a column accepts its own family, text
    columns and text values go anywhere, and so do the ``compatible`` pairs of families.
    Fields without a column are left out (see :func:`missing_columns_error`).
    """
    bad = []
    for f in fields:
        if f.name not in columns:
            continue
        want, have = field_family(f), column_family(columns[f.name])
        if want != have and "text" not in (want, have) and {want, have} not in compatible:
            bad.append(f"{f.name!r} ({f.type} into {columns[f.name]})")
    if bad:
        raise ConfigError(f"table {table}: column type mismatch: {', '.join(bad)}")


def require_unique_key(table: str, key: str, unique: Collection[str], hint: str = "") -> None:
    """Upserts match on a key a primary key or unique index covers alone."""
    if key not in unique:
        raise ConfigError(f"table {table}: upsert on {key!r} needs a primary key or "
                          f"unique index on it{hint}")


# --- statements ---------------------------------------------------------------------------


def set_columns(names: Sequence[str], key: str) -> list[str]:
    """The columns an ``update`` sets: all but the key (the key itself when it is alone,
    so the statement stays valid)."""
    return [c for c in names if c != key] or [key]


def dml(operation: str, table: str, names: Sequence[str], key: str, *,
        quote: Callable[[str], str], mark: str) -> str:
    """A one-row ``DELETE`` (by key), ``UPDATE`` (``SET`` columns first, the key last:
    bind ``[*set_columns(names, key), key]``) or ``INSERT`` of ``names`` (upsert and
    append too; the dialect appends its conflict clause for upsert).

    ``table`` is already quoted; ``quote`` quotes column names; ``mark`` is the driver's
    placeholder (``?``, ``%s``).
    """
    if operation == "delete":
        return f"DELETE FROM {table} WHERE {quote(key)} = {mark}"
    if operation == "update":
        sets = ", ".join(f"{quote(c)} = {mark}" for c in set_columns(names, key))
        return f"UPDATE {table} SET {sets} WHERE {quote(key)} = {mark}"
    cols = ", ".join(quote(c) for c in names)
    marks = ", ".join(mark for _ in names)
    return f"INSERT INTO {table} ({cols}) VALUES ({marks})"


# --- row-by-row replay --------------------------------------------------------------------


def replay_row_by_row(execute: Callable[[str], Any], count: int,
                      write_row: Callable[[int], Iterable[Rejection]],
                      reject: Callable[[int, Exception], Rejection | None], *,
                      release_after_rollback: bool = False) -> list[Rejection]:
    """Replay a failed batch one row per savepoint, inside the caller's transaction, to
    pin the failure on the bad rows; returns the rejections in row order.

    For each row index: ``SAVEPOINT conn_row``, ``write_row(index)`` (which may return
    rejections of its own, e.g. an update that matched nothing), ``RELEASE``. When
    ``write_row`` raises, ``reject(index, exc)`` classifies the error: a
    :class:`~conn.destination.Rejection` for an error caused by the row's values (the row
    is rolled back to its savepoint and rejected), None for any other error (raised, the
    caller rolls the transaction back). ``execute`` runs one SQL statement;
    ``release_after_rollback`` also releases the savepoint after rolling back to it.
    """
    rejected: list[Rejection] = []
    for idx in range(count):
        execute(f"SAVEPOINT {SAVEPOINT}")
        try:
            found = list(write_row(idx))
            execute(f"RELEASE SAVEPOINT {SAVEPOINT}")
        except Exception as exc:
            rejection = reject(idx, exc)
            if rejection is None:
                raise
            execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
            if release_after_rollback:
                execute(f"RELEASE SAVEPOINT {SAVEPOINT}")
            rejected.append(rejection)
        else:
            rejected += found
    return rejected
