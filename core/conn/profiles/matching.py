"""Probabilistic matchers: plugins that propose scored pairs of records.

A matcher plugin registers a :class:`Matcher` subclass through the ``register_matchers``
hook (entry-point group ``conn.matchers``). ``conn profiles build`` hands it every record
of the profile set with the declared columns and keeps the pairs scoring at least the
declared threshold. The core turns each kept pair into an identifier value the two
records share, of a type of its own per matcher, stitched in a round after every
deterministic rule: the same limits apply, and a pair that would break one yields
(docs/profiles.md, "Probabilistic matchers").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from conn.config.profiles import MATCH_TYPE_PREFIX, MatcherSpec
from conn.errors import ConfigError, PluginError

if TYPE_CHECKING:
    from conn.plugins import Registry

#: What :meth:`Matcher.pairs` returns.
PAIRS = pa.schema([("record_a", pa.uint64()), ("record_b", pa.uint64()),
                   ("score", pa.float64())])
TYPE_PREFIX = MATCH_TYPE_PREFIX
__all__ = ["PAIRS", "TYPE_PREFIX", "Matcher", "MatcherSpec", "check_pairs", "kept_entries",
           "matcher_for"]


class Matcher(ABC):
    """A probabilistic matcher. Subclasses set ``options_schema`` (JSON Schema of
    ``options``) and implement :meth:`pairs`; the core validates, thresholds and
    stitches."""

    options_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    def __init__(self, spec: MatcherSpec) -> None:
        self.spec = spec

    @abstractmethod
    def pairs(self, records: pa.Table) -> pa.Table:
        """Scored candidate pairs among ``records`` (``rkey`` uint64, then each of
        ``spec.columns`` as text, null where a record has none): a table of
        :data:`PAIRS` (``record_a``, ``record_b`` record keys, ``score`` a match
        probability in 0..1). Pairs below the threshold may be returned; the core drops
        them. A :class:`ConfigError` without a file is reported at the matcher's entry
        (its ``path`` relative to the entry, e.g. ``options.training``)."""


def matcher_for(registry: Registry, spec: MatcherSpec, file: str, path: str) -> Matcher:
    """An instance of the matcher plugin ``spec.plugin``, its options validated; errors
    name the file and the path of the entry."""
    from conn.config.validate import schema_errors

    try:
        cls = registry.matcher(spec.plugin)
    except PluginError as exc:
        raise ConfigError(str(exc), file=file, path=f"{path}.plugin") from exc
    errs = schema_errors(spec.options, cls.options_schema, file=file, path=f"{path}.options")
    if errs:
        raise errs[0]
    return cls(spec)


def kept_entries(pairs: pa.Table, spec: MatcherSpec) -> pa.Table:
    """The entries (``rkey``, ``ident``) of the pairs scoring at least the threshold:
    both records of a pair hold the value ``TYPE \\x1f a:b`` (a < b), so the pair joins
    them and nothing else. Self-pairs and repeats are dropped."""
    from conn.profiles.engine import SEP

    a = pc.cast(pairs.column("record_a"), pa.uint64())
    b = pc.cast(pairs.column("record_b"), pa.uint64())
    keep = pc.and_(pc.greater_equal(pc.cast(pairs.column("score"), pa.float64()),
                                    spec.threshold), pc.not_equal(a, b))
    keep = pc.fill_null(keep, False)
    lo, hi = pc.min_element_wise(a, b).filter(keep), pc.max_element_wise(a, b).filter(keep)
    value = pc.binary_join_element_wise(
        spec.type_name + SEP, pc.cast(lo, pa.string()), ":", pc.cast(hi, pa.string()), "")
    out = pa.table({"rkey": pa.concat_arrays([_flat(lo), _flat(hi)]),
                    "ident": pa.concat_arrays([_flat(value), _flat(value)])})
    return out.group_by(["rkey", "ident"]).aggregate([])


def _flat(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def check_pairs(pairs: pa.Table, spec: MatcherSpec, file: str, path: str) -> None:
    """A plugin's answer must have the :data:`PAIRS` columns."""
    missing = [n for n in PAIRS.names if n not in pairs.column_names]
    if missing:
        raise PluginError(f"matcher {spec.plugin!r} ({file}: {path}) returned no column(s) "
                          f"{missing}; a matcher returns {', '.join(PAIRS.names)}")


def match_records(spec: MatcherSpec, rows: dict[str, pa.Table], file: str,
                  path: str) -> pa.Table:
    """One row per record for a matcher: ``rkey`` and each of ``spec.columns`` as text,
    from every edge stream that has the column (null where none has it for a record;
    the greatest value where a record's rows disagree, so the input is deterministic)."""
    import duckdb

    present = {c for t in rows.values() for c in t.column_names}
    missing = [c for c in spec.columns if c not in present]
    if missing:
        raise ConfigError(f"no edge stream has the column(s) {missing} this matcher "
                          f"compares", file=file, path=f"{path}.columns")
    con = duckdb.connect()
    unions = []
    for i, table in enumerate(rows.values()):
        con.register(f"e{i}", table)
        cols = ", ".join(f"{_q(c)}::VARCHAR AS {_q(c)}" if c in table.column_names
                         else f"NULL::VARCHAR AS {_q(c)}" for c in spec.columns)
        unions.append(f"SELECT rkey, {cols} FROM e{i}")
    aggs = ", ".join(f"max({_q(c)}) AS {_q(c)}" for c in spec.columns)
    return con.sql(f"SELECT rkey, {aggs} FROM ({' UNION ALL '.join(unions)}) "
                   f"GROUP BY rkey ORDER BY rkey").to_arrow_table()


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def matched_entries(registry: Registry, specs: tuple[MatcherSpec, ...],
                    rows: dict[str, pa.Table], file: str, base: str) -> pa.Table:
    """The entries of every matcher's kept pairs (see :func:`kept_entries`)."""
    parts = []
    for spec in specs:
        path = f"{base}.matchers[{spec.index}]"
        matcher = matcher_for(registry, spec, file, path)
        records = match_records(spec, rows, file, path)
        try:
            pairs = matcher.pairs(records)
        except ConfigError as exc:
            if exc.file is not None:
                raise
            # A plugin knows its entry's options, not where the entry is: say where.
            where = f"{path}.{exc.path}" if exc.path else path
            raise ConfigError(exc.detail, file=file, path=where) from exc
        check_pairs(pairs, spec, file, path)
        parts.append(kept_entries(pairs, spec))
    if not parts:
        return pa.table({"rkey": pa.array([], pa.uint64()), "ident": pa.array([], pa.string())})
    return pa.concat_tables(parts)
