"""Column types for Arrow fields, from a table of rules per dialect.

Each SQL destination declares its mapping as data (:data:`TypeRule` entries tried in
order), so the dialects read side by side::

    RULES = [(pa.types.is_boolean, "BOOLEAN"), (pa.types.is_integer, "BIGINT"),
             (pa.types.is_decimal, lambda f: f"DECIMAL({f.type.precision},{f.type.scale})")]
    column_type(field, RULES, tags={"json": "JSON"}, dialect="MariaDB")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from conn.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

#: Field metadata key naming the SQL type a text column came from (``uuid``, ``json``,
#: ``jsonb``), so a column read from one database is created alike in another.
SQL_TYPE_KEY = b"conn.sql_type"

#: A rule: a test of the Arrow type, and the column type (text, or a function of the
#: field giving it, e.g. for precision and scale).
TypeRule = tuple[Callable[["pa.DataType"], bool], "str | Callable[[pa.Field], str]"]


def sql_type_tag(field: pa.Field) -> str:
    """The SQL type a text field was tagged with when read (:data:`SQL_TYPE_KEY`), or
    ``""``."""
    return (field.metadata or {}).get(SQL_TYPE_KEY, b"").decode()


def column_type(field: pa.Field, rules: Sequence[TypeRule], *,
                tags: Mapping[str, str] | None = None, dialect: str = "SQL") -> str:
    """The column type ``create_table`` and ``evolve`` give ``field``: the ``tags``
    entry of its :func:`sql_type_tag` when there is one, else the first rule whose test
    accepts its type (a dictionary by its value type). A type no rule accepts is a
    :class:`~conn.errors.ConfigError` naming the column."""
    import pyarrow as pa

    tag = sql_type_tag(field)
    if tags and tag in tags:
        return tags[tag]
    t = field.type
    if pa.types.is_dictionary(t):
        t = t.value_type
        field = pa.field(field.name, t, metadata=field.metadata)
    for test, out in rules:
        if test(t):
            return out(field) if callable(out) else out
    raise ConfigError(f"column {field.name!r}: no {dialect} type for Arrow type {field.type}")
