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
__all__ = ["KEPT", "PAIRS", "TYPE_PREFIX", "Matcher", "MatcherSpec", "check_pairs",
           "entries_of", "kept_entries", "kept_pairs", "matched_pairs", "matcher_for"]


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


#: The pairs a build kept, as the profile store holds them (``record_a`` < ``record_b``).
KEPT = pa.schema([("record_a", pa.uint64()), ("record_b", pa.uint64()),
                  ("score", pa.float64()), ("matcher", pa.string())])


def kept_pairs(pairs: pa.Table, spec: MatcherSpec) -> pa.Table:
    """The pairs scoring at least the threshold, each once (``record_a`` < ``record_b``,
    the highest score of its repeats), named by the matcher entry's type (``~match0``).
    Self-pairs and null scores are dropped."""
    a = pc.cast(pairs.column("record_a"), pa.uint64())
    b = pc.cast(pairs.column("record_b"), pa.uint64())
    score = pc.cast(pairs.column("score"), pa.float64())
    keep = pc.fill_null(pc.and_(pc.greater_equal(score, spec.threshold),
                                pc.not_equal(a, b)), False)
    out = pa.table({"record_a": pc.min_element_wise(a, b).filter(keep),
                    "record_b": pc.max_element_wise(a, b).filter(keep),
                    "score": score.filter(keep)})
    out = out.group_by(["record_a", "record_b"]).aggregate([("score", "max")])
    return pa.table({"record_a": out.column("record_a"), "record_b": out.column("record_b"),
                     "score": out.column("score_max"),
                     "matcher": pa.repeat(spec.type_name, out.num_rows)}, schema=KEPT)


def entries_of(kept: pa.Table) -> pa.Table:
    """The entries (``rkey``, ``ident``) of kept pairs: both records of a pair hold the
    value ``TYPE \x1f a:b``, so the pair joins them and nothing else."""
    from conn.profiles.engine import SEP

    lo, hi = _flat(kept.column("record_a")), _flat(kept.column("record_b"))
    value = pc.binary_join_element_wise(
        pc.binary_join_element_wise(kept.column("matcher"), SEP, ""),
        pc.cast(lo, pa.string()), ":", pc.cast(hi, pa.string()), "")
    return pa.table({"rkey": pa.concat_arrays([lo, hi]),
                     "ident": pa.concat_arrays([_flat(value), _flat(value)])})


def kept_entries(pairs: pa.Table, spec: MatcherSpec) -> pa.Table:
    """The entries of the pairs scoring at least the threshold (:func:`kept_pairs`,
    :func:`entries_of`)."""
    return entries_of(kept_pairs(pairs, spec))


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
    return entries_of(matched_pairs(registry, specs, rows, file, base))


def matched_pairs(registry: Registry, specs: tuple[MatcherSpec, ...],
                  rows: dict[str, pa.Table], file: str, base: str) -> pa.Table:
    """Every matcher's kept pairs (:data:`KEPT`; see :func:`kept_pairs`)."""
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
        parts.append(kept_pairs(pairs, spec))
    return pa.concat_tables(parts) if parts else KEPT.empty_table()
