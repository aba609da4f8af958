"""Read a profile set's edge streams: identifiers normalised, records keyed.

Identifiers are normalised with the consent layer's rules (:mod:`conn.consent.normalize`):
e-mail trimmed and lowercased, phone to E.164 digits (with the type's ``country_code``
for national numbers); other kinds are exact ids, only trimmed. A *record* is one
distinct combination of an edge's normalised identifiers; its key is DuckDB's 64-bit
hash of the edge's name and those values, so the same row read again is the same record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from conn import secrets
from conn.consent import normalize
from conn.errors import ConfigError
from conn.source import SourceState

if TYPE_CHECKING:
    from conn.config.model import Project
    from conn.config.profiles import Edge, IdentifierType, ProfileSet
    from conn.plugins import Registry
    from conn.source import Source


@dataclass
class EdgeData:
    """What the edges gave: ``entries`` (rkey, ident) for stitching, and per edge its
    rows (rkey, ``_digest``, ``_updated_at``, the golden-record and matcher columns it
    has). A row's ``_digest`` hashes its columns other than the identifiers: a build
    finds the records whose rows changed by it (:mod:`conn.profiles.refresh`)."""

    entries: pa.Table
    rows: dict[str, pa.Table]


def normalise(arr: pa.Array, itype: IdentifierType) -> pa.Array:
    """Identifier values of ``itype`` as the consent layer normalises them."""
    if itype.kind == "email":
        return normalize.email(arr)
    if itype.kind == "phone":
        return normalize.phone(arr, country_code=itype.country_code)
    s = pc.utf8_trim_whitespace(normalize.raw(arr))
    return pc.if_else(pc.equal(pc.utf8_length(s), 0), pa.scalar(None, pa.string()), s)


def open_source(project: Project, registry: Registry, name: str) -> Source:
    """An instance of the declared source ``name``, its config validated."""
    cfg = project.sources[name]
    cls = registry.source_class(cfg.type)
    secrets.register_config_secrets(cfg.config, cls.config_schema)
    cls.validate_config(cfg.config, file=str(project.file), path=f"sources.{name}.config")
    return cls.create(cfg.config, instance=name, project_dir=project.dir)


def read_edges(project: Project, registry: Registry, ps: ProfileSet) -> EdgeData:
    """Read every edge stream of ``ps`` completely."""
    import duckdb

    con = duckdb.connect()
    parts, rows = [], {}
    for edge in ps.edges.values():
        table = _read_edge(project, registry, ps, edge)
        con.register("t", table)
        ids = [f"_id{i}" for i in range(len(edge.identifiers))]
        rest = ", ".join('"' + c.replace('"', '""') + '"'
                         for c in table.column_names if c not in ids)
        keyed = con.sql(f"SELECT hash(?, {', '.join(ids)}) AS rkey, hash({rest}) AS _digest,"
                        f" * FROM t", params=[edge.name]).to_arrow_table()
        con.unregister("t")
        con.register("k", keyed)
        # ident: "type<SEP>value"; SEP is chr(31), the unit separator. Rows repeating a
        # record's identifiers (an event per visit) are made distinct once, before the
        # columns are unpivoted: a UNION of each column's distinct entries hashed every
        # entry's string again (2M app users: 1.1 s, now 0.5 s).
        types = list(edge.identifiers.values())
        selects = [f"SELECT rkey, ? || chr(31) || {c} AS ident FROM r WHERE {c} IS NOT NULL"
                   for c in ids]
        query = f"WITH r AS (SELECT DISTINCT rkey, {', '.join(ids)} FROM k) " + \
            " UNION ALL ".join(selects)
        if len(set(types)) < len(types):
            # Two columns of one type can hold the same identifier: one entry.
            query = f"SELECT DISTINCT * FROM ({query})"
        parts.append(con.sql(query, params=types).to_arrow_table())
        rows[edge.name] = keyed.drop_columns(ids)
        con.unregister("k")
    entries = pa.concat_tables(parts) if parts else pa.table(
        {"rkey": pa.array([], pa.uint64()), "ident": pa.array([], pa.string())})
    return EdgeData(entries, rows)


def _read_edge(project: Project, registry: Registry, ps: ProfileSet,
               edge: Edge) -> pa.Table:
    f, base = str(project.file), f"profiles.{ps.name}.edges.{edge.name}"
    src = open_source(project, registry, edge.source)
    try:
        stream = src.stream(edge.stream, query=edge.query)
        names = set(stream.schema.names)
        missing = [c for c in edge.identifiers if c not in names]
        if edge.updated_at and edge.updated_at not in names:
            missing.append(edge.updated_at)
        if missing:
            raise ConfigError(f"stream {stream.name!r} of source {edge.source!r} has no "
                              f"column(s) {missing} (columns: {', '.join(stream.schema.names)})",
                              file=f, path=base)
        # The golden record's columns and the matchers' (each edge that has them).
        wanted_cols = {r.column for r in ps.fields.values()}
        wanted_cols |= {c for m in ps.matchers for c in m.columns}
        fields = sorted(wanted_cols & names)
        wanted = [*edge.identifiers, *fields, *([edge.updated_at] if edge.updated_at else [])]
        if src.projection:
            stream = stream.narrowed(wanted)
        batches = [_edge_batch(b, ps, edge, fields)
                   for b in src.read(stream) if not isinstance(b, SourceState)]
    finally:
        src.close()
    if batches:
        return pa.Table.from_batches(batches)
    empty = {f"_id{i}": pa.array([], pa.string()) for i in range(len(edge.identifiers))}
    return pa.table({**empty, "_updated_at": pa.array([], pa.timestamp("us", "UTC")),
                     **{c: pa.array([], stream.schema.field(c).type) for c in fields}})


def _edge_batch(batch: pa.RecordBatch, ps: ProfileSet, edge: Edge,
                fields: list[str]) -> pa.RecordBatch:
    cols = {f"_id{i}": normalise(batch.column(c), ps.types[t])
            for i, (c, t) in enumerate(edge.identifiers.items())}
    if edge.updated_at:
        ts = batch.column(edge.updated_at)
        cols["_updated_at"] = ts if pa.types.is_timestamp(ts.type) else pc.cast(
            ts, pa.timestamp("us", "UTC"), safe=False)
    else:
        cols["_updated_at"] = pa.nulls(batch.num_rows, pa.timestamp("us", "UTC"))
    for c in fields:
        cols[c] = batch.column(c)
    return pa.RecordBatch.from_pydict(cols)
