"""PostgreSQL destination: each batch is copied (binary COPY, through ADBC) into a temporary
table, then merged into the target with one statement, in one transaction.

Erasure (``erase``, ``conn forget``) is ``delete``: ``DELETE ... USING`` removes every row
holding the key (an ``append`` table may hold several), in one transaction. The plugin
writes no other table: the staging tables are ``TEMPORARY`` and dropped with the
transaction, so no copy of the rows is left by conn. What PostgreSQL itself keeps is
outside a DELETE's reach and the database operator's to govern: dead row versions until
VACUUM reclaims their space, the WAL, replicas and backups
(https://www.postgresql.org/docs/current/routine-vacuuming.html).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from conn.destination import (
    Capabilities,
    Destination,
    ObjectInfo,
    Rejection,
    WriteRequest,
    WriteResult,
)
from conn.errors import ConfigError, ConnError, RetryLater
from conn.sql import (
    Table,
    destination_properties,
    object_fields,
    object_identifiers,
    prepare_table,
    replay_row_by_row,
    table_options,
)

from conn_postgres import common
from conn_postgres.common import quote_ident

if TYPE_CHECKING:
    import pyarrow as pa

IDX = "_conn_idx"
#: What ``erase`` does (Capabilities.erasure); see the module docstring.
ERASURE = "PostgreSQL DELETE of every row with the key"

_COLUMNS_SQL = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""

_UNIQUE_SQL = """
SELECT c.relname, a.attname, i.indisprimary
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
WHERE n.nspname = $1 AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL
ORDER BY c.relname, i.indisprimary DESC, a.attname
"""

#: Coarse type families: a column accepts values of its own family, and text columns
#: accept anything; anything else is a schema mismatch refused before writing.
_FAMILIES = {
    "smallint": "num", "integer": "num", "bigint": "num", "real": "num",
    "double precision": "num", "numeric": "num", "boolean": "bool", "text": "text",
    "character varying": "text", "character": "text", "bytea": "bin", "date": "time",
    "time": "time", "time without time zone": "time", "timestamp": "time",
    "timestamp without time zone": "time", "timestamptz": "time",
    "timestamp with time zone": "time", "interval": "interval", "uuid": "uuid",
    "json": "json", "jsonb": "json",
}


def _family(pgtype: str) -> str:
    if pgtype.endswith("[]"):
        return "array"
    return _FAMILIES.get(pgtype.split("(")[0].strip(), "other")


class PostgresDestination(common.PostgresConnection, Destination):
    """Writes to PostgreSQL tables: upsert, insert, update, delete and append by key.

    Each batch runs in one transaction: binary COPY into a temporary table, then one
    ``INSERT ... ON CONFLICT``, ``UPDATE ... FROM`` or ``DELETE ... USING``. When some rows
    break a constraint or hold a bad value, the batch is replayed row by row inside
    savepoints: those rows are rejected with PostgreSQL's message, the others written.
    """

    name: ClassVar[str] = "postgres"
    #: What says where it writes (compared between runs; see Destination.target_identity).
    identity_keys: ClassVar[tuple[str, ...] | None] = (
        "url", "host", "port", "database", "schema", "tables")
    description: ClassVar[str] = "PostgreSQL tables (COPY into a staging table, then merge)"
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            **common.CONNECTION_PROPERTIES,
            **destination_properties(
                batch_size=50_000,
                table_properties={"columns": {"type": "object",
                                              "additionalProperties": {"type": "string"}}}),
        },
        "additionalProperties": False,
    }

    def __init__(self, config: Mapping[str, Any] | None = None, *, instance: str = "",
                 project_dir: str | Path | None = None) -> None:
        super().__init__(config, instance=instance, project_dir=project_dir)
        self.schema_name: str = self.config.get("schema", "public")
        self._lock = threading.Lock()
        self._columns: dict[str, dict[str, str]] | None = None
        self._unique: dict[str, list[str]] = {}

    # --- connection and catalog --------------------------------------------------------

    def _open_connection(self) -> Any:
        # Autocommit at the driver level; transactions are explicit BEGIN/COMMIT, so
        # that savepoints work after an error (the driver refuses them otherwise).
        conn = common.connect(self.config, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SET TIME ZONE 'UTC'")
        except BaseException:
            conn.close()  # not handed out: nothing else would close it
            raise
        return conn

    def _finish(self, conn: Any) -> None:
        pass  # an autocommit connection: every statement is its own transaction

    def _catalog(self, refresh: bool = False) -> dict[str, dict[str, str]]:
        if self._columns is None or refresh:
            cols: dict[str, dict[str, str]] = {}
            for table, col, typ in self._fetchall(_COLUMNS_SQL, (self.schema_name,)):
                cols.setdefault(table, {})[col] = typ
            unique: dict[str, list[str]] = {}
            for table, col, _primary in self._fetchall(_UNIQUE_SQL, (self.schema_name,)):
                if col not in unique.setdefault(table, []):
                    unique[table].append(col)
            self._columns, self._unique = cols, unique
        return self._columns

    def _table_opts(self, table: str) -> dict[str, Any]:
        return table_options(self.config, table)

    # --- duties -------------------------------------------------------------------------

    def _capabilities(self) -> Capabilities:
        return Capabilities(
            batch_size=int(self.config.get("batch_size", 50_000)),
            modes=frozenset({"upsert", "insert", "update", "mirror", "append"}),
            supports_delete=True,
            erasure=ERASURE,
        )

    def objects(self) -> list[ObjectInfo]:
        catalog = self._catalog(refresh=True)
        names = sorted(set(catalog) | set(self.config.get("tables") or {}))
        out = []
        for table in names:
            opts = self._table_opts(table)
            cols = catalog.get(table) or dict(opts.get("columns") or {})
            idents = object_identifiers(opts.get("key"), self._unique.get(table, []), cols)
            props = {c: common.json_schema_for(t) for c, t in cols.items()}
            out.append(ObjectInfo(
                name=table,
                fields=object_fields(props, idents,
                                     open_=opts["evolve"] or table not in catalog),
                identifiers=tuple(idents),
                capabilities=self._capabilities(),
                description=("table" if table in catalog else "table (created on first write)"),
            ))
        return out

    def describe_requests(self, request: WriteRequest) -> list[dict[str, Any]]:
        return [{"operation": request.operation,
                 "table": f"{self.schema_name}.{request.object.name}",
                 "key": request.match_key, "rows": len(request),
                 "columns": request.records.schema.names}]

    def write_batch(self, request: WriteRequest) -> WriteResult:
        with self._lock:
            try:
                return self._write(request)
            except (ConfigError, RetryLater):
                raise
            except ConnError:
                self._rollback_or_drop()
                raise
            except Exception as exc:
                self._rollback_or_drop()
                self._columns = None  # the table may have changed under us: re-read it
                raise RetryLater(
                    f"destination {self.instance!r} table {request.object.name!r}: "
                    f"{common.error_message(exc)}") from None

    # --- writing ------------------------------------------------------------------------

    def _rollback_or_drop(self) -> None:
        if self._conn is None:
            return
        try:
            with self._conn.cursor() as cur:
                cur.execute("ROLLBACK")
        except Exception:
            self._drop_connection()

    def _write(self, request: WriteRequest) -> WriteResult:
        table, key, op = request.object.name, request.match_key, _sql_op(request)
        batch = request.records
        prepared = self._prepare_table(table, batch.schema, key, op)
        if prepared is None:  # delete from a table that does not exist: nothing to do
            return WriteResult.ok()
        columns = dict(prepared.columns)
        batch = _nested_to_json(batch, columns)
        names = [key] if op == "delete" else batch.schema.names
        conn = self._connection()
        if op in ("insert", "append"):
            data = _for_copy(batch)
            if _copy_compatible(data.schema, columns):
                # Fast path: binary COPY straight into the table, no staging table.
                with conn.cursor() as cur:
                    cur.execute("BEGIN")
                    try:
                        cur.adbc_ingest(table, data, mode="append",
                                        db_schema_name=self.schema_name)
                        cur.execute("COMMIT")
                        return WriteResult.ok()
                    except Exception as exc:
                        if not common.is_row_error(exc):
                            raise
                        cur.execute("ROLLBACK")
                return self._row_by_row(request, table, names, key, columns)
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            stage = self._stage(cur, batch.select(names))
            if op in ("update", "delete"):
                # Row estimates for the join with the target (temporary tables have none):
                # index probes, not a scan of a large target, for a small batch.
                cur.execute(f"ANALYZE {stage}")
            try:
                sql = self._merge_sql(op, table, stage, names, key, columns, single=False,
                                      unique=_unique_keys(batch.column(key)))
                cur.execute(sql)
                missing = self._missing(cur, op, table, stage, key, columns)
                cur.execute(f"DROP TABLE {stage}")
                cur.execute("COMMIT")
                return WriteResult(rejected=missing)
            except Exception as exc:
                if not common.is_row_error(exc):
                    raise
                cur.execute("ROLLBACK")
        return self._row_by_row(request, table, names, key, columns)

    def _stage(self, cur: Any, batch: pa.RecordBatch) -> str:
        """Binary-COPY the batch, with its row numbers, into a temporary table."""
        import pyarrow as pa

        name = f"_conn_stage_{uuid.uuid4().hex[:16]}"
        data = _for_copy(batch).append_column(IDX, pa.array(range(batch.num_rows), pa.int64()))
        cur.adbc_ingest(name, data, mode="create", temporary=True)
        return quote_ident(name)

    def _merge_sql(self, op: str, table: str, stage: str, names: list[str], key: str,
                   columns: dict[str, str], *, single: bool, unique: bool = False) -> str:
        target = common.qualified(self.schema_name, table)
        q = quote_ident
        where = f" WHERE s.{q(IDX)} = $1" if single else ""
        # Repeated keys in one batch: the last row wins (ON CONFLICT refuses to touch a row
        # twice); skip the sort when the batch's keys are already unique.
        latest = f"{stage} s{where}" if unique or single else (
            f"(SELECT DISTINCT ON (s.{q(key)}) * FROM {stage} s "
            f"ORDER BY s.{q(key)}, s.{q(IDX)} DESC) s")

        def expr(c: str) -> str:
            return f"CAST(s.{q(c)} AS {columns[c]})"

        key_match = f"t.{q(key)} = {expr(key)}"
        if op == "delete":
            return f"DELETE FROM {target} t USING {stage} s WHERE {key_match}" + \
                (f" AND s.{q(IDX)} = $1" if single else "")
        col_list = ", ".join(q(c) for c in names)
        values = ", ".join(expr(c) for c in names)
        others = [c for c in names if c != key]
        if op == "update":
            sets = ", ".join(f"{q(c)} = {expr(c)}" for c in others) or f"{q(key)} = t.{q(key)}"
            return f"UPDATE {target} t SET {sets} FROM {latest} WHERE {key_match}"
        if op == "upsert":
            action = ("DO UPDATE SET " + ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in others)
                      if others else "DO NOTHING")
            return (f"INSERT INTO {target} ({col_list}) SELECT {values} FROM {latest} "
                    f"ON CONFLICT ({q(key)}) {action}")
        # insert, append: every row (the staging table holds them in batch order)
        return f"INSERT INTO {target} ({col_list}) SELECT {values} FROM {stage} s{where}"

    def _missing(self, cur: Any, op: str, table: str, stage: str, key: str,
                 columns: dict[str, str], single_idx: int | None = None) -> list[Rejection]:
        """For ``update``: rows whose key the table does not hold are rejected."""
        if op != "update":
            return []
        target = common.qualified(self.schema_name, table)
        q = quote_ident
        extra = f" AND s.{q(IDX)} = $1" if single_idx is not None else ""
        cur.execute(
            f"SELECT s.{q(IDX)} FROM {stage} s WHERE NOT EXISTS (SELECT 1 FROM {target} t "
            f"WHERE t.{q(key)} = CAST(s.{q(key)} AS {columns[key]})){extra} "
            f"ORDER BY s.{q(IDX)}",
            parameters=(single_idx,) if single_idx is not None else None)
        return [Rejection(int(r[0]), f"no row with {key} = this value to update",
                          retryable=False) for r in cur.fetchall()]

    def _row_by_row(self, request: WriteRequest, table: str, names: list[str], key: str,
                    columns: dict[str, str]) -> WriteResult:
        """Replay the batch one row per savepoint to pin the failure on the bad rows."""
        op = _sql_op(request)
        conn = self._connection()
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            stage = self._stage(cur, request.records.select(names))
            sql = self._merge_sql(op, table, stage, names, key, columns, single=True)

            def write_row(idx: int) -> list[Rejection]:
                cur.execute(sql, parameters=(idx,))
                return self._missing(cur, op, table, stage, key, columns, idx)

            rejected = replay_row_by_row(cur.execute, len(request), write_row, _reject)
            cur.execute(f"DROP TABLE {stage}")
            cur.execute("COMMIT")
        return WriteResult(rejected=rejected)

    # --- table management ---------------------------------------------------------------

    def _prepare_table(self, table: str, schema: pa.Schema, key: str,
                       op: str) -> Table | None:
        """The table (column types, unique keys), after creating or evolving it if
        allowed; a clear error for a batch the table cannot hold."""
        opts = self._table_opts(table)

        def describe(fresh: bool) -> Table | None:
            catalog = self._catalog(refresh=fresh)
            if table not in catalog:
                return None
            return Table(catalog[table], self._unique.get(table, []))

        def add_columns(fields: list[pa.Field]) -> None:
            self._ddl([f"ALTER TABLE {common.qualified(self.schema_name, table)} ADD COLUMN "
                       f"IF NOT EXISTS {quote_ident(f.name)} {common.pg_type_for(f)}"
                       for f in fields])

        return prepare_table(
            table, schema, key, op, options=opts, instance=self.instance,
            shown=f"{self.schema_name}.{table}", describe=describe,
            create=lambda schema, primary: self._create(table, schema, primary,
                                                        opts.get("columns") or {}),
            add_columns=add_columns,
            families=(_family, lambda f: _family(common.pg_type_for(f))),
            compatible=({"json", "other"}, {"uuid", "bin"}, {"array", "json"}),
            unique_hint=f" (CREATE UNIQUE INDEX ON {quote_ident(table)} ({quote_ident(key)}))")

    def _create(self, table: str, schema: pa.Schema, key: str,
                declared: dict[str, str]) -> None:
        cols = []
        for f in schema:
            typ = declared.get(f.name) or common.pg_type_for(f)
            cols.append(f"{quote_ident(f.name)} {typ}")
        cols.append(f"PRIMARY KEY ({quote_ident(key)})")
        self._ddl([f"CREATE TABLE IF NOT EXISTS {common.qualified(self.schema_name, table)} "
                   f"({', '.join(cols)})"])

    def _ddl(self, statements: list[str]) -> None:
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                for sql in statements:
                    cur.execute(sql)
                cur.execute("COMMIT")
        except Exception as exc:
            self._rollback_or_drop()
            raise ConfigError(
                f"destination {self.instance!r}: {common.error_message(exc)}") from None


def _sql_op(request: WriteRequest) -> str:
    """The statement a request needs: an erasure is a delete of every row with the key."""
    return "delete" if request.operation == "erase" else request.operation


def _copy_compatible(schema: pa.Schema, columns: dict[str, str]) -> bool:
    """True when binary COPY of these Arrow types fits the target columns as they are
    (the driver encodes each Arrow type as one PostgreSQL type)."""
    import pyarrow as pa

    text = {"text", "character varying", "character"}
    for f in schema:
        t, target = f.type, columns[f.name].split("(")[0].strip()
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            ok = target in text and not (f.metadata or {}).get(common.SQL_TYPE_KEY)
        elif pa.types.is_decimal(t):
            ok = target == "numeric"
        elif pa.types.is_timestamp(t):
            ok = target == ("timestamp with time zone" if t.tz else
                            "timestamp without time zone")
        else:
            simple = [(pa.types.is_int8, "smallint"), (pa.types.is_int16, "smallint"),
                      (pa.types.is_int32, "integer"), (pa.types.is_int64, "bigint"),
                      (pa.types.is_float32, "real"), (pa.types.is_float64, "double precision"),
                      (pa.types.is_boolean, "boolean"), (pa.types.is_binary, "bytea"),
                      (pa.types.is_date32, "date"), (pa.types.is_time64, "time without time zone")]
            ok = any(test(t) and target == name for test, name in simple)
        if not ok:
            return False
    return True


def _reject(idx: int, exc: Exception) -> Rejection | None:
    """Data exceptions and constraint violations are the row's; a missing parent row
    (foreign key, 23503) may arrive later: retried then."""
    if not common.is_row_error(exc):
        return None
    return Rejection(idx, common.error_message(exc), common.sqlstate(exc) == "23503")


def _unique_keys(col: pa.Array) -> bool:
    import pyarrow.compute as pc

    return pc.count_distinct(col, mode="all").as_py() == len(col)


def _nested_to_json(batch: pa.RecordBatch, columns: dict[str, str]) -> pa.RecordBatch:
    """Lists, structs and maps bound for json/jsonb columns become JSON text."""
    import json

    import pyarrow as pa

    out = batch
    for i, f in enumerate(batch.schema):
        t = f.type
        nested = pa.types.is_list(t) or pa.types.is_large_list(t) or \
            pa.types.is_struct(t) or pa.types.is_map(t)
        if nested and _family(columns.get(f.name, "")) == "json":
            values = batch.column(i).to_pylist()
            text = pa.array([None if v is None else json.dumps(v, default=str)
                             for v in values], pa.string())
            out = out.set_column(i, pa.field(f.name, pa.string(),
                                             metadata={common.SQL_TYPE_KEY: b"jsonb"}), text)
    return out


def _for_copy(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Cast the few Arrow types the COPY writer lacks to ones it has (vectorised)."""
    import pyarrow as pa

    cols, fields, changed = [], [], False
    for f, col in zip(batch.schema, batch.columns, strict=True):
        t = col.type
        new: pa.DataType | None = None
        if pa.types.is_date64(t):
            new = pa.date32()
        elif pa.types.is_dictionary(t):
            new = t.value_type
        elif pa.types.is_uint64(t):
            new = pa.decimal128(20, 0)
        elif pa.types.is_null(t):
            new = pa.string()
        elif pa.types.is_struct(t) or pa.types.is_map(t):
            raise ConfigError(f"column {f.name!r}: nested {t} values need a json mapping")
        if new is not None:
            col, changed = col.cast(new), True
        cols.append(col)
        fields.append(pa.field(f.name, col.type))
    return pa.RecordBatch.from_arrays(cols, schema=pa.schema(fields)) if changed else batch
