"""Quoting SQL identifiers."""

from __future__ import annotations

from conn.errors import ConfigError


def quote_ident(name: str, quote: str = '"') -> str:
    """Quote an identifier: always, so no table or column name can change the SQL.

    ``quote`` is the dialect's quote character (``"`` in standard SQL, PostgreSQL and
    SQLite; a backtick in MariaDB/MySQL); inside the name it is doubled. A NUL byte,
    which no database accepts in a name, is a :class:`~conn.errors.ConfigError`.
    """
    if "\x00" in name:
        raise ConfigError(f"identifier {name!r} contains a NUL byte")
    return quote + name.replace(quote, quote * 2) + quote
