"""What the PostgreSQL source and destination share: settings, connecting, quoting
(:func:`conn.sql.quote_ident`), error redaction and the mapping between PostgreSQL and Arrow
types."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from conn import secrets
from conn.errors import CheckFailed, ConfigError
from conn.sql import (
    SQL_TYPE_KEY,
    LazyConnection,
    TypeRule,
    column_type,
    quote_ident,
    sql_type_tag,
)

if TYPE_CHECKING:
    import pyarrow as pa

#: Connection settings, shared by the source's and the destination's config schema.
CONNECTION_PROPERTIES: dict[str, Any] = {
    "url": {"type": "string", "secret": True,
            "description": "postgresql://user:password@host:5432/db?sslmode=require; "
                           "fields below override its parts"},
    "host": {"type": "string"},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "user": {"type": "string"},
    "password": {"type": "string", "secret": True},
    "database": {"type": "string"},
    "sslmode": {"enum": ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]},
    "sslrootcert": {"type": "string"},
    "sslcert": {"type": "string"},
    "sslkey": {"type": "string"},
    "application_name": {"type": "string"},
    "connect_timeout": {"type": "integer", "minimum": 1},
    "schema": {"type": "string", "default": "public",
               "description": "schema whose tables are streams / objects"},
}

#: The message for a URL whose authority cannot be read (never quoting any part of it).
URL_HINT = ("cannot read the host and port; a password holding @ : / ? # [ ] or % "
            "must be percent-encoded in a URL (@ as %40, : as %3A, / as %2F), or given "
            "as 'password:' instead")

_PARAMS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "connect_timeout")
_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.I)


def build_uri(config: Mapping[str, Any]) -> str:
    """A libpq URI from ``url`` and/or the separate fields (fields win)."""
    base = urlsplit(config.get("url") or "postgresql://")
    if base.scheme not in ("postgresql", "postgres"):
        raise ConfigError("url must start with postgresql://", path="config.url")
    user = config.get("user", base.username or "")
    password = config.get("password", base.password or "")
    host = config.get("host", base.hostname or "127.0.0.1")
    try:
        port = config.get("port", base.port or 5432)
    except ValueError:  # its message would quote a piece of the password
        raise ConfigError(URL_HINT, path="config.url") from None
    database = config.get("database", base.path.lstrip("/") or "postgres")
    params = dict(p.split("=", 1) for p in base.query.split("&") if "=" in p)
    for key in _PARAMS:
        if config.get(key) is not None:
            params[key] = str(config[key])
    params.setdefault("application_name", "conn")
    auth = quote(user, safe="") if user else ""
    if password:
        secrets.register(password)
        auth += ":" + quote(password, safe="")
    auth = auth + "@" if auth else ""
    netloc = f"[{host}]" if ":" in host else host
    return (f"postgresql://{auth}{netloc}:{int(port)}/{quote(database, safe='')}"
            f"?{urlencode(params)}")


def redact(text: object) -> str:
    """Driver messages may echo the connection string: mask passwords and secrets."""
    s = secrets.redact(str(text))
    s = _URL_PASSWORD.sub(r"\1***@", s)
    return _KV_PASSWORD.sub(r"\1***", s)


def connect(config: Mapping[str, Any], *, autocommit: bool = False) -> Any:
    """Open an ADBC connection; raise :class:`CheckFailed` with a redacted reason."""
    import adbc_driver_postgresql.dbapi as dbapi

    uri = build_uri(config)
    try:
        conn = dbapi.connect(uri, autocommit=autocommit)
    except Exception as exc:
        raise CheckFailed(f"cannot connect to PostgreSQL: {redact(exc)}") from None
    return conn


class PostgresConnection(LazyConnection):
    """:class:`~conn.sql.LazyConnection` for the ADBC driver: parameters as
    ``parameters=``, messages redacted and cut to the server's first line."""

    def _execute(self, cursor: Any, sql: str, params: tuple[Any, ...]) -> None:
        cursor.execute(sql, parameters=params or None)

    def _error_message(self, exc: BaseException) -> str:
        return error_message(exc)


def qualified(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE of a driver error ('' when unknown)."""
    state = getattr(exc, "sqlstate", None)
    if state:
        return str(state)
    m = re.search(r"SQLSTATE: ([0-9A-Z]{5})", str(exc))
    return m.group(1) if m else ""


def is_row_error(exc: BaseException) -> bool:
    """Errors caused by some rows' values (data exceptions, constraint violations), which
    the row-by-row fallback can pin on the offending rows."""
    return sqlstate(exc)[:2] in ("22", "23")


def error_message(exc: BaseException) -> str:
    """A short, redacted message (the first line of the server's error)."""
    text = redact(exc)
    text = re.sub(r"^[A-Z_]+: \[libpq\] ", "", text)
    for marker in ("\nQuery was:", ". SQLSTATE:"):
        text = text.split(marker)[0]
    return text.strip()


# --- types ----------------------------------------------------------------------------



def decimal_from_typmod(typmod: int) -> pa.DataType:
    import pyarrow as pa

    if typmod < 4:
        return pa.string()  # unconstrained numeric: keep every digit as text
    precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
    if precision <= 38:
        return pa.decimal128(precision, scale)
    return pa.decimal256(precision, scale)


def normalize_field(f: pa.Field) -> pa.Field:
    """Turn a field ADBC reports into the type conn streams: numeric(p, s) to decimal,
    uuid/json/unknown extension types to their plain storage (tagged in metadata)."""
    import pyarrow as pa

    meta = f.metadata or {}
    pgtype = meta.get(b"POSTGRESQL:type", b"").decode()
    t = f.type
    if isinstance(t, pa.BaseExtensionType):
        if pgtype == "numeric":
            t = decimal_from_typmod(int(meta.get(b"POSTGRESQL:typmod", b"-1")))
        elif pgtype in ("json", "jsonb"):
            t = t.storage_type
        else:  # uuid and types without an Arrow match are read as text (select_list)
            t = pa.string()
    elif pa.types.is_list(t):
        t = pa.list_(normalize_field(t.value_field).type)
    new_meta = {SQL_TYPE_KEY: pgtype.encode()} if pgtype in ("uuid", "json", "jsonb") else None
    return pa.field(f.name, t, nullable=f.nullable, metadata=new_meta)


def normalize_schema(schema: pa.Schema) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([normalize_field(f) for f in schema])


def needs_text_cast(f: pa.Field) -> bool:
    """Columns read as text (``col::text``): uuid, and types Arrow has no match for."""
    import pyarrow as pa

    meta = f.metadata or {}
    pgtype = meta.get(b"POSTGRESQL:type", b"").decode()
    t = f.type
    if pa.types.is_list(t):
        return needs_text_cast(t.value_field)
    return isinstance(t, pa.BaseExtensionType) and pgtype not in ("numeric", "json", "jsonb")


def select_list(raw: pa.Schema, alias: str = "") -> str:
    """The SELECT list reading ``raw``'s columns, casting what Arrow cannot hold to text."""
    import pyarrow as pa

    prefix = f"{alias}." if alias else ""
    parts = []
    for f in raw:
        col = prefix + quote_ident(f.name)
        if needs_text_cast(f):
            suffix = "::text[]" if pa.types.is_list(f.type) else "::text"
            parts.append(f"{col}{suffix} AS {quote_ident(f.name)}")
        else:
            parts.append(col)
    return ", ".join(parts) or "*"


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Cast a fetched batch to the stream schema (vectorised, column by column)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = []
    for f, col in zip(schema, batch.columns, strict=True):
        if isinstance(col.type, pa.BaseExtensionType):
            col = col.storage
        if col.type != f.type:
            col = pc.cast(col, f.type)
        cols.append(col)
    return pa.RecordBatch.from_arrays(cols, schema=schema)


@functools.cache
def type_rules() -> list[TypeRule]:
    """Arrow type -> the column type ``create_table`` and ``evolve`` use (first match
    wins)."""
    import pyarrow as pa

    t = pa.types
    return [
        (t.is_boolean, "boolean"),
        (lambda x: t.is_int8(x) or t.is_int16(x) or t.is_uint8(x), "smallint"),
        (lambda x: t.is_int32(x) or t.is_uint16(x), "integer"),
        (lambda x: t.is_int64(x) or t.is_uint32(x), "bigint"),
        (t.is_uint64, "numeric(20,0)"),
        (lambda x: t.is_float16(x) or t.is_float32(x), "real"),
        (t.is_float64, "double precision"),
        (lambda x: t.is_string(x) or t.is_large_string(x) or t.is_string_view(x), "text"),
        (lambda x: t.is_binary(x) or t.is_large_binary(x) or t.is_fixed_size_binary(x),
         "bytea"),
        (t.is_date, "date"),
        (t.is_time, "time"),
        (lambda x: t.is_duration(x) or t.is_interval(x), "interval"),
        (t.is_decimal, lambda f: f"numeric({f.type.precision},{f.type.scale})"),
        (t.is_timestamp, lambda f: "timestamptz" if f.type.tz else "timestamp"),
        (lambda x: t.is_list(x) or t.is_large_list(x),
         lambda f: pg_type_for(f.type.value_field) + "[]"),
        (lambda x: t.is_struct(x) or t.is_map(x), "jsonb"),
    ]


def pg_type_for(field: pa.Field) -> str:
    """The PostgreSQL column type ``create_table`` and ``evolve`` use for an Arrow field:
    a text column tagged uuid/json/jsonb keeps its type; an extension type is typed by
    its storage (16-byte ones as uuid); else :func:`type_rules`."""
    import pyarrow as pa

    t = field.type
    tagged = sql_type_tag(field)
    if tagged in ("uuid", "json", "jsonb") and (pa.types.is_string(t)
                                                 or pa.types.is_large_string(t)):
        return tagged
    if isinstance(t, pa.BaseExtensionType):
        if isinstance(t.storage_type, pa.FixedSizeBinaryType) and t.storage_type.byte_width == 16:
            return "uuid"
        field = pa.field(field.name, t.storage_type)
    return column_type(field, type_rules(), dialect="PostgreSQL")


def json_schema_for(pgtype: str) -> dict[str, Any]:
    """A JSON Schema fragment for a column type (destination object fields)."""
    base = pgtype.split("(")[0].strip()
    if base.endswith("[]"):
        return {"type": ["array", "null"], "items": json_schema_for(base[:-2])}
    table = {
        "smallint": "integer", "integer": "integer", "bigint": "integer",
        "real": "number", "double precision": "number", "numeric": "number",
        "boolean": "boolean", "json": None, "jsonb": None,
    }
    if base in table:
        t = table[base]
        return {"type": [t, "null"]} if t else {}
    if base == "date":
        return {"type": ["string", "null"], "format": "date"}
    if base.startswith("timestamp"):
        return {"type": ["string", "null"], "format": "date-time"}
    if base == "uuid":
        return {"type": ["string", "null"], "format": "uuid"}
    return {"type": ["string", "null"]}
