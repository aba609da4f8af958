"""Compute a sync's traits and add them to its batches (docs/traits.md).

:class:`Traits` builds one DuckDB query per source (:mod:`conn.traits.sql`). A source
that runs DuckDB SQL itself (:meth:`~conn.source.Source.sql_relation`) runs it in place;
the streams of any other source are read through the plugin as Arrow batches and
scanned once by an in-memory DuckDB. :class:`TraitTable` holds the result per key and
adds the columns to each batch of the sync by key, vectorised (a sorted array of key
hashes and one binary search per batch, :mod:`conn.traits.key_index`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from conn.config.traits import ZERO_WHEN_NONE, Activation, Trait
from conn.errors import ConfigError, ConfigErrors, ConnError
from conn.source import SourceState
from conn.traits import sql as tsql
from conn.traits.key_index import KeyIndex

if TYPE_CHECKING:
    import duckdb

    from conn.source import Source, StreamInfo


def _connect() -> duckdb.DuckDBPyConnection:
    import duckdb

    con = duckdb.connect()
    # Times written as text without an offset are UTC (docs/traits.md).
    con.execute("SET TimeZone = 'UTC'")
    return con


class Traits:
    """The traits named ``names`` (with what they need) of ``activation``, computed at
    ``now`` (seconds since 1970, UTC). ``open_source(name)`` gives a ready source; each
    opened one is closed after use."""

    def __init__(self, activation: Activation, names: set[str],
                 open_source: Callable[[str], Source], now: float, file: str) -> None:
        order = activation.closure(names)
        self.traits = [activation.traits[n] for n in order]
        self.out = [t.name for t in self.traits]
        self.open_source, self.now, self.file = open_source, now, file
        self.by_source: dict[str, list[Trait]] = {}
        for t in self.traits:
            if not t.derived:
                self.by_source.setdefault(str(t.source), []).append(t)
        self.derived = [t for t in self.traits if t.derived]
        self._schema: pa.Schema | None = None
        self._aggregates: pa.Schema | None = None

    # --- the query -----------------------------------------------------------------------

    def _parts(self, source: Source, traits: list[Trait]) -> tuple[list[tsql.StreamPart],
                                                                  list[StreamInfo]]:
        groups: dict[tuple[str, str], list[Trait]] = {}
        for t in traits:
            groups.setdefault((str(t.stream), str(t.key)), []).append(t)
        parts, infos = [], []
        for i, ((stream_name, key), ts) in enumerate(groups.items()):
            try:
                info = source.stream(stream_name)
            except ConfigError as exc:
                raise ConfigError(exc.detail, file=self.file,
                                  path=f"traits.{ts[0].name}.stream") from exc
            for t in ts:
                for col, what in ((t.key, "key"), (t.time, "time"), (t.column, "column")):
                    if col and col not in info.schema.names:
                        raise ConfigError(
                            f"stream {stream_name!r} has no column {col!r} (columns: "
                            f"{', '.join(info.schema.names)})", file=self.file,
                            path=f"traits.{t.name}.{what}")
            ref = source.sql_relation(info) or f"t{i}"
            types = {t.time: info.schema.field(t.time).type for t in ts if t.time}
            parts.append(tsql.StreamPart(ref, key, tuple(ts), types))
            infos.append(info)
        return parts, infos

    def _run_source(self, name: str, traits: list[Trait], keys: Sequence[str] | None,
                    derived: list[Trait], out: list[str], empty: bool) -> pa.Table:
        source = self.open_source(name)
        try:
            parts, infos = self._parts(source, traits)
            query = tsql.source_query(parts, self.now, [] if empty else keys, derived, out)
            if source.sql_relation(infos[0]) is not None:
                # The columns from the query over no key (cheap: describing the whole
                # query would run its aggregation), then the query itself is read.
                nothing = tsql.source_query(parts, self.now, [], derived, out)
                stream = source.query_stream(nothing, (tsql.KEY,))
                if empty:
                    return stream.schema.empty_table()
                stream = dataclasses.replace(stream, query=query)
                return _table(source.read(stream), stream.schema)
            con = _connect()
            try:
                for i, info in enumerate(infos):
                    data = info.schema.empty_table() if empty else \
                        pa.RecordBatchReader.from_batches(info.schema,
                                                          _batches(source.read(info)))
                    con.register(f"t{i}", data)
                return con.sql(query).to_arrow_table()
            finally:
                con.close()
        finally:
            source.close()

    def compute(self, keys: Sequence[str] | None = None, *, empty: bool = False) -> pa.Table:
        """Every aggregate trait per key (column :data:`conn.traits.sql.KEY`, text);
        ``keys``: only these keys (a streaming micro-batch); ``empty``: no rows, only the
        schema. Ratios and expressions are added per batch (:meth:`TraitTable.attach`),
        so a key without any event gets them too."""
        aggregates = [t.name for t in self.traits if not t.derived]
        if not aggregates:
            return pa.table({tsql.KEY: pa.array([], pa.string())})
        sources = list(self.by_source)
        if len(sources) == 1:
            return self._run_source(sources[0], self.by_source[sources[0]], keys, [],
                                    aggregates, empty)
        con = _connect()
        try:
            tables = []
            for i, name in enumerate(sources):
                ts = self.by_source[name]
                con.register(f"r{i}", self._run_source(name, ts, keys, [],
                                                       [t.name for t in ts], empty))
                tables.append((f"r{i}", ts))
            return con.sql(tsql.derived_query(tables, [], aggregates)).to_arrow_table()
        finally:
            con.close()

    def schema(self, stream: pa.Schema | None = None) -> pa.Schema:
        """The traits' types (evaluates the query over no rows: an error in a ``where``
        or ``sql`` is a configuration error naming the trait). ``stream``: the columns
        an expression may read besides traits (the sync's stream)."""
        import duckdb

        if self._schema is not None:
            return self._schema
        try:
            table = self.compute(empty=True)
        except (duckdb.Error, ConnError) as exc:
            if isinstance(exc, ConfigError) and exc.path:
                raise
            raise self._blame(exc) from exc
        self._aggregates = pa.schema([table.schema.field(t.name) for t in self.traits
                                      if not t.derived])
        out = pa.schema([*(stream or []), *self._aggregates]).empty_table()
        batch = pa.RecordBatch.from_pylist([], schema=out.schema)
        for t in self.derived:  # one by one: an error names its trait
            try:
                batch = derive(batch, [t])
            except duckdb.Error as exc:
                first = str(exc).splitlines()[0]
                raise ConfigError(f"DuckDB cannot evaluate trait {t.name!r}: {first}",
                                  file=self.file,
                                  path=f"traits.{t.name}.{'sql' if t.sql else 'ratio'}"
                                  ) from exc
        self._schema = pa.schema([batch.schema.field(n) for n in self.out])
        return self._schema

    def _blame(self, exc: BaseException) -> ConfigError:
        """The aggregate trait DuckDB refused (trying each alone)."""
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        for t in self.traits:
            if t.derived:
                continue
            alone = Traits(Activation({t.name: t}), {t.name}, self.open_source, self.now,
                           self.file)
            try:
                alone.compute(empty=True)
            except Exception as e:  # the first trait that fails alone is the culprit
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                what = "where" if t.where else "column"
                return ConfigError(f"DuckDB cannot evaluate trait {t.name!r}: {first}",
                                   file=self.file, path=f"traits.{t.name}.{what}")
        return ConfigError(f"DuckDB cannot evaluate the traits: {detail}", file=self.file,
                           path="traits")

    def table(self, keys: Sequence[str] | None = None) -> TraitTable:
        """The traits computed now, ready to add to batches."""
        self.schema()
        assert self._aggregates is not None
        return TraitTable(self.compute(keys), self._aggregates, self.derived,
                          {t.name for t in self.traits if t.aggregate in ZERO_WHEN_NONE})


def derive(batch: pa.RecordBatch, derived: Sequence[Trait]) -> pa.RecordBatch:
    """``batch`` with the ratio and expression traits added (DuckDB, row order kept)."""
    if not derived:
        return batch
    from conn.duckdb_scan import duckdb_connection

    con = duckdb_connection()
    con.register("conn_trait_rows", pa.Table.from_batches([batch], batch.schema))  # type: ignore[attr-defined]
    try:
        out = con.sql(tsql.derive_query("conn_trait_rows", derived)).to_arrow_table()  # type: ignore[attr-defined]
    finally:
        con.unregister("conn_trait_rows")  # type: ignore[attr-defined]
    return out.combine_chunks().to_batches()[0] if out.num_rows else \
        pa.RecordBatch.from_pylist([], schema=out.schema)


def _batches(items: Iterator[pa.RecordBatch | SourceState]) -> Iterator[pa.RecordBatch]:
    for item in items:
        if not isinstance(item, SourceState):
            yield item


def _table(items: Iterator[pa.RecordBatch | SourceState], schema: pa.Schema) -> pa.Table:
    batches = list(_batches(items))
    return pa.Table.from_batches(batches, schema) if batches else schema.empty_table()


class TraitTable:
    """Traits per key, indexed by a sorted array of key hashes; :meth:`attach` adds them
    to a batch by its keys. Keys without events get 0 for counts and null otherwise."""

    def __init__(self, table: pa.Table, schema: pa.Schema, derived: Sequence[Trait],
                 zero: set[str]) -> None:
        self.schema, self.zero, self.derived = schema, zero, list(derived)
        self.index = KeyIndex(table.column(tsql.KEY))
        self.keys = self.index.keys
        self.columns = {n: table.column(n).combine_chunks().cast(schema.field(n).type)
                        for n in schema.names}

    def positions(self, keys: pa.Array) -> pa.Array:
        """Row of each key in the table (null where the table has none)."""
        return self.index.positions(keys)

    def attach(self, batch: pa.RecordBatch, keys: pa.Array) -> pa.RecordBatch:
        """``batch`` with one column per trait, aligned by ``keys``."""
        at = self.positions(keys)
        cols, fields = list(batch.columns), list(batch.schema)
        for f in self.schema:
            col = self.columns[f.name].take(at)
            if f.name in self.zero:
                col = col.fill_null(0)
            cols.append(col)
            fields.append(f)
        out = pa.RecordBatch.from_arrays(cols, schema=pa.schema(fields))
        return derive(out, self.derived)


def trait_errors(names: set[str], stream: StreamInfo, file: str, sync: str) -> list[ConfigError]:
    """A sync whose stream has a column named like a trait it uses is ambiguous."""
    clash = sorted(names & set(stream.schema.names))
    return [ConfigError(f"stream {stream.name!r} has a column named like trait {n!r}: "
                        f"rename the trait", file=file, path=f"traits.{n}") for n in clash]


def raise_all(errors: list[ConfigError]) -> None:
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
