"""conn's conformance suite for the ``duckdb`` source (conn.testing.conformance)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conn.testing.conformance import SuiteContext, source_suite
from conn_source_duckdb.source import DuckDBSource

ROWS = 1_000


def database(ctx: SuiteContext) -> Path:
    """A DuckDB file with ``people`` (1,000 rows, cursor ``updated_at``) and ``big``
    (300,000 rows, for the memory check), created once per test folder."""
    path = ctx.tmp_path / "warehouse.duckdb"
    if not path.exists():
        import duckdb

        con = duckdb.connect(str(path))
        con.execute(f"""
            create table people as
            select i::integer as id, 'person' || i || '@example.com' as email,
                   case when i % 7 = 0 then null else 'Zoë 東京 ' || i end as name,
                   timestamp '2024-01-01' + to_seconds(i // 3) as updated_at
            from range({ROWS}) t(i);
            alter table people add primary key (id);
            create table big as
            select i::bigint as id, repeat('x', 40) || i as label from range(300000) t(i);
            alter table big add primary key (id);
        """)
        con.close()
    return path


def config(ctx: SuiteContext) -> dict[str, Any]:
    return {"path": str(database(ctx)), "streams": {"people": {"cursor": "updated_at"}}}


TestDuckDBSourceConformance = source_suite(
    DuckDBSource,
    config=config,
    stream="people",
    expected_rows=[{"id": i, "email": f"person{i}@example.com"} for i in range(ROWS)],
    bad_config={"path": "", "read_only": "yes"},
    failing_config=lambda ctx: {"path": str(ctx.tmp_path / "missing.duckdb")},
    batch_rows=100,
    memory_stream="big",
)
