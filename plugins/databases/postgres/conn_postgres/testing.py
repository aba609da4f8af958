"""Test support, not used by the plugin: the ``names`` fixture that the plugin's tests
and conn's end-to-end follow tests share, for tests against a PostgreSQL server with
``wal_level = logical`` (pytest is imported when used).

A conftest or test module that has an ``sql`` fixture binds it by name, saying how a
server without logical replication ends a test (``pytest.skip``, or a function that
fails under CI)::

    names = names_fixture(pytest.skip)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

#: Runs one statement (``$1`` for its parameter) on an autocommit connection; returns
#: the rows, or None for a statement without.
Sql = Callable[..., Any]


def drop_slot(sql: Sql, slot: str) -> None:
    """Drop the replication slot ``slot`` if there is one, ending the walsender that
    holds it first (a follower closing may take it again in between: retried)."""
    for _ in range(100):
        try:
            active = sql("SELECT active_pid FROM pg_replication_slots "
                         "WHERE slot_name = $1", (slot,))
            if not active:
                return
            if active[0][0] is None:
                sql("SELECT pg_drop_replication_slot($1)", (slot,))
                return
            sql("SELECT pg_terminate_backend($1)", (active[0][0],))
        except Exception:  # taken again in between (a closing follower): retry
            pass
        time.sleep(0.1)


def names_fixture(skip: Callable[[str], Any]) -> Any:
    """The fixture ``names``: unique names for tables, slots and publications
    (``names("t")``); the slots, publications and tables of those names are dropped at
    the end (an active slot's walsender is ended first). ``skip(reason)`` when the
    server's ``wal_level`` is not ``logical``. Needs an ``sql`` fixture (:data:`Sql`)."""
    import pytest

    @pytest.fixture
    def names(sql: Sql) -> Iterator[Callable[[str], str]]:
        level = sql("SELECT current_setting('wal_level')")[0][0]
        if level != "logical":
            skip(f"PostgreSQL runs with wal_level = {level}; scripts/ensure-services.sh "
                 "switches it to logical")
        made: list[str] = []
        tag = uuid.uuid4().hex[:10]

        def name(kind: str) -> str:
            made.append(f"{kind}{len(made)}_{tag}")
            return made[-1]

        yield name
        for n in made:
            drop_slot(sql, n)
            sql(f'DROP PUBLICATION IF EXISTS "{n}"')
            sql(f'DROP TABLE IF EXISTS "{n}"')

    return names
