"""What the MariaDB/MySQL source and destination share: settings, connecting, quoting,
error redaction and the mapping between column types and Arrow types."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from conn import secrets, sql
from conn.errors import CheckFailed, ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

CONNECTION_PROPERTIES: dict[str, Any] = {
    "url": {"type": "string", "secret": True,
            "description": "mysql://user:password@host:3306/db?ssl_ca=/path/ca.pem"},
    "host": {"type": "string"},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "user": {"type": "string"},
    "password": {"type": "string", "secret": True},
    "database": {"type": "string"},
    "ssl_ca": {"type": "string"},
    "ssl_cert": {"type": "string"},
    "ssl_key": {"type": "string"},
    "ssl_verify_identity": {"type": "boolean"},
    "connect_timeout": {"type": "integer", "minimum": 1, "default": 10},
}

#: Field metadata key carrying the SQL type a text column came from (json, uuid).
SQL_TYPE_KEY = sql.SQL_TYPE_KEY
#: MariaDB/MySQL error codes caused by a row's values (constraint, bad value, range).
ROW_ERRORS = {1048, 1062, 1264, 1265, 1292, 1366, 1406, 1451, 1452, 3819, 4025, 1690, 1411}


_URL_OPTIONS = ("ssl_ca", "ssl_cert", "ssl_key", "ssl_verify_identity", "connect_timeout")


def settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``pymysql.connect`` from ``url`` and/or fields (fields win)."""
    url = config.get("url")
    out: dict[str, Any] = {}
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb"):
            raise ConfigError("url must start with mysql:// or mariadb://", path="config.url")
        try:
            port = parts.port
        except ValueError:  # its message would quote a piece of the password
            raise ConfigError("cannot read the host and port; a password holding "
                              "@ : / ? # [ ] or % must be percent-encoded in a URL (@ as "
                              "%40, : as %3A, / as %2F), or given as 'password:' instead",
                              path="config.url") from None
        out.update(host=parts.hostname, port=port, user=unquote(parts.username or ""),
                   password=unquote(parts.password or ""),
                   database=unquote(parts.path.lstrip("/")) or None)
        for k, v in parse_qs(parts.query).items():
            if k in _URL_OPTIONS:
                out[k] = v[-1] if k != "ssl_verify_identity" else v[-1] in ("1", "true")
    for k in ("host", "port", "user", "password", "database", "ssl_ca", "ssl_cert",
              "ssl_key", "ssl_verify_identity", "connect_timeout"):
        if config.get(k) is not None:
            out[k] = config[k]
    out.setdefault("host", "127.0.0.1")
    out["port"] = int(out.get("port") or 3306)
    out["connect_timeout"] = int(out.get("connect_timeout") or 10)
    if out.get("password"):
        secrets.register(out["password"])
    return {k: v for k, v in out.items() if v is not None}


def redact(text: object) -> str:
    s = secrets.redact(str(text))
    return re.sub(r"(mysql|mariadb)://([^:/@\s]*):[^@\s]*@", r"\1://\2:***@", s)


def connect(config: Mapping[str, Any], *, streaming: bool = False) -> Any:
    """Open a connection (UTC session, FOUND_ROWS so UPDATE counts matched rows)."""
    import pymysql
    from pymysql.constants import CLIENT

    kw = settings(config)
    try:
        conn = pymysql.connect(
            **kw, autocommit=False, charset="utf8mb4", client_flag=CLIENT.FOUND_ROWS,
            cursorclass=pymysql.cursors.SSCursor if streaming else pymysql.cursors.Cursor,
            init_command="SET time_zone = '+00:00'")
    except Exception as exc:
        raise CheckFailed(f"cannot connect to MariaDB/MySQL: {redact(exc)}") from None
    return conn


def error_code(exc: BaseException) -> int:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0


def error_message(exc: BaseException) -> str:
    args: tuple[Any, ...] = getattr(exc, "args", ())
    if len(args) >= 2:
        return redact(f"({args[0]}) {args[1]}")
    return redact(exc)


def quote_ident(name: str) -> str:
    """Quote an identifier with backticks: always, so no name can change the SQL."""
    return sql.quote_ident(name, "`")


# --- types ----------------------------------------------------------------------------


def arrow_field(name: str, data_type: str, column_type: str, precision: int | None,
                scale: int | None, is_json: bool = False) -> pa.Field:
    """Arrow field for a column described by information_schema.columns."""
    import pyarrow as pa

    dt = data_type.lower()
    unsigned = "unsigned" in column_type.lower()
    meta = None
    if is_json or dt == "json":
        t: pa.DataType = pa.string()
        meta = {SQL_TYPE_KEY: b"json"}
    elif dt == "tinyint" and column_type.lower().startswith("tinyint(1)"):
        t = pa.bool_()
    elif dt in ("tinyint", "smallint", "mediumint", "int", "integer", "bigint"):
        widths = {"tinyint": 8, "smallint": 16, "mediumint": 32, "int": 32, "integer": 32,
                  "bigint": 64}
        bits = widths[dt]
        t = {8: pa.uint8(), 16: pa.uint16(), 32: pa.uint32(), 64: pa.uint64()}[bits] \
            if unsigned else {8: pa.int8(), 16: pa.int16(), 32: pa.int32(),
                              64: pa.int64()}[bits]
    elif dt in ("decimal", "numeric"):
        p, s = int(precision or 10), int(scale or 0)
        t = pa.decimal128(p, s) if p <= 38 else pa.decimal256(p, s)
    elif dt == "float":
        t = pa.float32()
    elif dt in ("double", "real"):
        t = pa.float64()
    elif dt == "date":
        t = pa.date32()
    elif dt == "datetime":
        t = pa.timestamp("us")
    elif dt == "timestamp":
        t = pa.timestamp("us", "UTC")
    elif dt == "time":
        t = pa.duration("us")  # TIME spans -838:59:59 to 838:59:59, not a time of day
    elif dt == "year":
        t = pa.int16()
    elif dt in ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"):
        t = pa.binary()
    elif dt == "bit":
        t = pa.int64()
    else:  # char, varchar, text, enum, set, uuid, inet, ...
        t = pa.string()
        if dt == "uuid":
            meta = {SQL_TYPE_KEY: b"uuid"}
    return pa.field(name, t, metadata=meta)


def select_expr(field: pa.Field) -> str:
    """Expression reading a column: BIT as an integer, everything else as stored."""
    col = quote_ident(field.name)
    return col


#: Column types of tagged text columns.
TAGGED_TYPES = {"json": "JSON", "jsonb": "JSON", "uuid": "CHAR(36)"}


def _integer(f: pa.Field) -> str:
    import pyarrow as pa

    name = {8: "TINYINT", 16: "SMALLINT", 32: "INT", 64: "BIGINT"}[f.type.bit_width]
    return f"{name} UNSIGNED" if pa.types.is_unsigned_integer(f.type) else name


def _decimal(f: pa.Field) -> str:
    if f.type.precision > 65:
        raise ConfigError(f"column {f.name!r}: DECIMAL holds at most 65 digits")
    return f"DECIMAL({f.type.precision},{f.type.scale})"


@functools.cache
def type_rules() -> list[sql.TypeRule]:
    """Arrow type -> the column type ``create_table`` and ``evolve`` use (first match
    wins)."""
    import pyarrow as pa

    t = pa.types
    return [
        (t.is_boolean, "BOOLEAN"),
        (t.is_integer, _integer),
        (t.is_float32, "FLOAT"),
        (t.is_floating, "DOUBLE"),
        (t.is_decimal, _decimal),
        (t.is_date, "DATE"),
        (t.is_timestamp, lambda f: "TIMESTAMP(6) NULL" if f.type.tz else "DATETIME(6)"),
        (lambda x: t.is_time(x) or t.is_duration(x), "TIME(6)"),
        (lambda x: t.is_binary(x) or t.is_large_binary(x) or t.is_fixed_size_binary(x),
         "LONGBLOB"),
        (lambda x: t.is_list(x) or t.is_large_list(x) or t.is_struct(x) or t.is_map(x),
         "JSON"),
        (lambda x: True, "LONGTEXT"),
    ]


def column_type(field: pa.Field) -> str:
    """The MariaDB/MySQL column type ``create_table`` and ``evolve`` give an Arrow field."""
    return sql.column_type(field, type_rules(), tags=TAGGED_TYPES, dialect="MariaDB/MySQL")


def column_values(col: pa.Array) -> list[Any]:
    """Python values to bind for one Arrow column (timestamps as UTC text, nested values
    as JSON text)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if pa.types.is_timestamp(t):
        if t.tz:
            col = col.cast(pa.timestamp(t.unit))
        return pc.strftime(col, "%Y-%m-%d %H:%M:%S").to_pylist()
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_struct(t) or \
            pa.types.is_map(t):
        return [None if v is None else json.dumps(v, default=str) for v in col.to_pylist()]
    return col.to_pylist()


def rows_of(batch: pa.RecordBatch, names: list[str]) -> list[tuple[Any, ...]]:
    cols = [column_values(batch.column(n)) for n in names]
    return list(zip(*cols, strict=True))
