"""The ``duckdb`` source: tables, views and SQL queries of a DuckDB file as Arrow batches.

DuckDB and pyarrow are imported inside methods so that registering the plugin stays cheap.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from conn.errors import CheckFailed, ConfigError, ConnError
from conn.source import Source, SourceState, StreamInfo

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

_SYSTEM_SCHEMAS = ("information_schema", "pg_catalog")


def quote_ident(name: str) -> str:
    """Quote a DuckDB identifier (table, column, schema name)."""
    return '"' + name.replace('"', '""') + '"'


def _reader(relation: Any, batch_rows: int) -> pa.RecordBatchReader:
    """A streaming Arrow reader over a relation, across DuckDB versions."""
    to_reader = getattr(relation, "to_arrow_reader", None)
    if to_reader is not None:
        return to_reader(batch_rows)
    return relation.fetch_record_batch(batch_rows)


def bookmark_value(value: Any) -> Any:
    """A cursor value as a JSON-friendly bookmark (DuckDB casts it back when reading)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | _dt.timedelta):
        return str(value)
    return str(value)


class DuckDBSource(Source):
    """Reads tables, views and queries from a DuckDB database file.

    Batches stream through DuckDB's Arrow reader, so memory stays bounded by the batch
    size whatever the table size. A stream with a ``cursor`` column is read in cursor
    order and yields :class:`~conn.source.SourceState` bookmarks; with a stored bookmark
    only rows whose cursor is greater are read.
    """

    name: ClassVar[str] = "duckdb"
    description: ClassVar[str] = "Tables, views and SQL queries of a DuckDB database file"
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["path"],
        "properties": {
            "path": {
                "type": "string", "minLength": 1,
                "description": "DuckDB database file; relative paths are resolved against "
                               "base_dir, else the current working directory",
            },
            "base_dir": {
                "type": "string", "minLength": 1,
                "description": "directory relative paths are resolved against (the runtime "
                               "may set it to the project directory)",
            },
            "schema": {
                "type": "string", "minLength": 1,
                "description": "only offer tables and views of this schema",
            },
            "read_only": {"type": "boolean", "default": True},
            "streams": {
                "type": "object",
                "description": "per-stream settings: override the primary key or set a "
                               "cursor of a table or view, or define a named query",
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "query": {"type": "string", "minLength": 1},
                        "primary_key": {
                            "type": "array", "items": {"type": "string", "minLength": 1},
                        },
                        "cursor": {"type": "string", "minLength": 1},
                    },
                },
            },
        },
    }

    def __init__(self, config: Mapping[str, Any] | None = None, *, instance: str = "",
                 project_dir: str | Path | None = None) -> None:
        super().__init__(config, instance=instance, project_dir=project_dir)
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._refs: dict[str, str] = {}

    # --- connection -------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The database file, resolved against ``base_dir``, the project folder or the
        working directory."""
        p = Path(os.path.expanduser(str(self.config["path"])))
        if not p.is_absolute():
            p = Path(self.config.get("base_dir") or self.project_dir or os.getcwd()) / p
        return p

    def _con(self) -> duckdb.DuckDBPyConnection:
        if self._connection is None:
            import duckdb

            path = self.path
            if not path.is_file():
                raise CheckFailed(
                    f"source {self.instance!r}: DuckDB file not found: {path} "
                    f"(check 'path' in its config)"
                )
            try:
                self._connection = duckdb.connect(
                    str(path), read_only=bool(self.config.get("read_only", True))
                )
            except duckdb.Error as exc:
                raise CheckFailed(
                    f"source {self.instance!r}: cannot open DuckDB file {path}: {exc}"
                ) from exc
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def check(self) -> None:
        import duckdb

        con = self._con()
        try:
            con.sql("select 1").fetchall()
            schema = self.config.get("schema")
            if schema:
                found = con.sql(
                    "select count(*) from information_schema.schemata "
                    "where catalog_name = current_database() and schema_name = ?",
                    params=[schema],
                ).fetchall()[0][0]
                if not found:
                    raise CheckFailed(
                        f"source {self.instance!r}: DuckDB file {self.path} has no schema "
                        f"{schema!r}"
                    )
        except duckdb.Error as exc:
            raise CheckFailed(
                f"source {self.instance!r}: cannot read DuckDB file {self.path}: {exc}"
            ) from exc

    # --- discovery --------------------------------------------------------------------

    def _schema_of(self, sql: str) -> pa.Schema:
        import duckdb

        try:
            rel = self._con().sql(f"select * from ({sql}) as _q limit 0")
            return _reader(rel, 1).schema
        except duckdb.Error as exc:
            raise ConfigError(
                f"source {self.instance!r}: DuckDB cannot run the query on {self.path}: {exc}"
            ) from exc

    def _primary_keys(self) -> dict[tuple[str, str], tuple[str, ...]]:
        rows = self._con().sql(
            "select schema_name, table_name, constraint_column_names "
            "from duckdb_constraints() "
            "where constraint_type = 'PRIMARY KEY' and database_name = current_database()"
        ).fetchall()
        return {(s, t): tuple(cols) for s, t, cols in rows}

    def discover(self) -> list[StreamInfo]:
        con = self._con()
        only = self.config.get("schema")
        rows = con.sql(
            "select table_schema, table_name from information_schema.tables "
            "where table_catalog = current_database() "
            "order by table_schema, table_name"
        ).fetchall()
        pks = self._primary_keys()
        overrides: dict[str, dict[str, Any]] = self.config.get("streams") or {}
        streams: list[StreamInfo] = []
        self._refs = {}
        for schema, table in rows:
            if schema in _SYSTEM_SCHEMAS or (only and schema != only):
                continue
            name = table if (only or schema == "main") else f"{schema}.{table}"
            ref = f"{quote_ident(schema)}.{quote_ident(table)}"
            self._refs[name] = ref
            info = StreamInfo(name, self._schema_of(f"select * from {ref}"),
                              pks.get((schema, table), ()))
            streams.append(self._apply(info, overrides.get(name)))
        for name, spec in overrides.items():
            if spec.get("query"):
                query = _strip(spec["query"])
                info = StreamInfo(name, self._schema_of(query), query=query)
                streams.append(self._apply(info, spec))
            elif name not in self._refs:
                known = ", ".join(sorted(self._refs)) or "none"
                raise ConfigError(
                    f"source {self.instance!r}: no table or view {name!r} in {self.path} "
                    f"(tables and views: {known}); add 'query:' to define a query stream",
                    path=f"config.streams.{name}",
                )
        return streams

    def _apply(self, info: StreamInfo, spec: dict[str, Any] | None) -> StreamInfo:
        if not spec:
            return info
        pk = tuple(spec.get("primary_key") or info.primary_key)
        cursor = spec.get("cursor") or info.cursor
        for col, key in [(c, "primary_key") for c in pk] + [(cursor, "cursor")]:
            if col is not None and col not in info.schema.names:
                raise ConfigError(
                    f"source {self.instance!r}: stream {info.name!r} has no column {col!r} "
                    f"(columns: {', '.join(info.schema.names)})",
                    path=f"config.streams.{info.name}.{key}",
                )
        return StreamInfo(info.name, info.schema, pk, cursor, info.personal, info.query)

    def query_stream(self, query: str, primary_key: tuple[str, ...]) -> StreamInfo:
        query = _strip(query)
        schema = self._schema_of(query)
        missing = [c for c in primary_key if c not in schema.names]
        if missing:
            raise ConfigError(
                f"source {self.instance!r}: primary key column(s) {missing} are not in the "
                f"query's columns ({', '.join(schema.names)})"
            )
        return StreamInfo("query", schema, tuple(primary_key), query=query)

    def sql_relation(self, stream: StreamInfo) -> str | None:
        """The stream as a parenthesised query of this file: traits over it run here."""
        return f"({self._base_sql(stream)})"

    # --- reading ----------------------------------------------------------------------

    def _base_sql(self, stream: StreamInfo) -> str:
        if stream.query:
            return stream.query
        if not self._refs:
            self.discover()
        ref = self._refs.get(stream.name)
        if ref is None:
            raise ConfigError(f"source {self.instance!r}: no table or view {stream.name!r} "
                              f"in {self.path}")
        return f"select * from {ref}"

    def read_batches(
        self, stream: StreamInfo, state: Any | None, batch_rows: int
    ) -> Iterator[pa.RecordBatch | SourceState]:
        import duckdb

        base = self._base_sql(stream)
        con = self._con()
        try:
            if not stream.cursor:
                rel = con.sql(base)
                if rel is None:
                    raise ConfigError(f"source {self.instance!r}: stream {stream.name!r} "
                                      f"is not a query that returns rows")
                yield from _reader(rel, batch_rows)
                return
            col = quote_ident(stream.cursor)
            sql = f"select * from ({base}) as _s"
            params: list[Any] | None = None
            if state is not None:
                ctype = con.sql(f"select {col} from ({base}) as _s limit 0").types[0]
                sql += f" where {col} > cast(? as {ctype})"
                params = [state]
            sql += f" order by {col} asc nulls first"
            reader = _reader(con.sql(sql, params=params), batch_rows)
            yield from _with_bookmarks(reader, stream.cursor)
        except duckdb.Error as exc:
            raise ConnError(
                f"source {self.instance!r}: reading stream {stream.name!r} from {self.path} "
                f"failed: {exc}"
            ) from exc


def _strip(query: str) -> str:
    return query.strip().rstrip(";").strip()


def _with_bookmarks(reader: pa.RecordBatchReader,
                    cursor: str) -> Iterator[pa.RecordBatch | SourceState]:
    """Yield batches in cursor order with a bookmark after each batch whose last cursor
    value is strictly below the next batch's first: rows sharing a cursor value across a
    batch boundary are never split by a bookmark, so resuming never skips one."""
    held: pa.RecordBatch | None = None
    for batch in reader:
        if batch.num_rows == 0:
            continue
        if held is not None:
            yield held
            last = held.column(cursor)[-1].as_py()
            first = batch.column(cursor)[0].as_py()
            if last is not None and first is not None and last < first:
                yield SourceState(bookmark_value(last))
        held = batch
    if held is not None:
        yield held
        last = held.column(cursor)[-1].as_py()
        if last is not None:
            yield SourceState(bookmark_value(last))
