"""Consent sources: streams of consent events, resolved to one answer per subject and
purpose.

Resolution (once per run, DuckDB over the Arrow table the runtime read):

1. each event's status becomes a code (:mod:`conn.consent.values`); an event without a
   readable status is ``MALFORMED``;
2. an event whose timestamp is null or unparsable is ``MALFORMED`` (unless it denies) and
   sorts as the *latest* event: an event we cannot place in time blocks rather than hides
   behind older grants;
3. the latest event per (subject, purpose) wins; on equal timestamps the most restrictive
   status wins (denied, then malformed, then granted), so the rule is deterministic and
   never resolves a tie in favour of processing.

Lookups per batch are vectorised: subjects are hashed once (DuckDB ``hash``) and sorted;
a batch's keys are hashed and found with ``numpy.searchsorted``, then verified by string
equality, so the cost per batch does not grow with the number of consent events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conn.consent.values import MALFORMED, NO_RECORD, REASONS, classify
from conn.duckdb_scan import duckdb_connection, sql_over
from conn.errors import ConfigError

#: Keys of a ``consent_sources`` entry naming columns, with their defaults.
COLUMN_KEYS = {"subject": None, "purpose": "purpose", "status": "status",
               "timestamp": "timestamp", "jurisdiction": None, "legal_basis": None}


@dataclass
class ConsentIndex:
    """The resolved consent of one consent source: per purpose, a code for every subject
    that has an event (aligned with ``subjects``); ``rows`` gives, per purpose and
    subject, the row of ``events`` holding the winning event (-1: none), for its time."""

    name: str
    subjects: pa.Array
    codes: dict[str, np.ndarray]
    bases: dict[str, pa.Array]
    events: pa.Table
    _hashes: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0, np.uint64))
    _order: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0, np.int64))
    rows: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    #: The column of ``events`` holding the key rows are looked up by (``subject``; a
    #: profile's consent: ``profile_id``, :mod:`conn.profiles.consent`).
    key: str = "subject"
    #: Per key, identity and purpose, the latest event (a profile's consent: which
    #: identity said what; ``decided`` marks the events that won). None otherwise.
    by_identity: pa.Table | None = field(repr=False, default=None)

    def __post_init__(self) -> None:
        if len(self.subjects) and len(self._hashes) != len(self.subjects):
            h = np.asarray(sql_over(self.subjects, "hash(v)").to_numpy(), dtype=np.uint64)
            self._order = np.argsort(h, kind="stable")
            self._hashes = h[self._order]

    def lookup(self, keys: pa.Array) -> np.ndarray:
        """Position in ``subjects`` of each key (int64), -1 where the subject has no
        event. Nulls are never found."""
        n = len(keys)
        if n == 0 or len(self.subjects) == 0:
            return np.full(n, -1, dtype=np.int64)
        kh = np.asarray(sql_over(keys, "hash(v)").to_numpy(zero_copy_only=False),
                        dtype=np.uint64)
        pos = np.searchsorted(self._hashes, kh)
        pos = np.minimum(pos, len(self._hashes) - 1)
        cand = self._order[pos]
        hit = self._hashes[pos] == kh
        same = pc.fill_null(pc.equal(self.subjects.take(pa.array(cand)), keys), False)
        hit &= np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool)
        return np.where(hit, cand, -1)

    def codes_for(self, purpose: str, positions: np.ndarray) -> np.ndarray:
        """Consent codes of ``purpose`` for looked-up positions (NO_RECORD if -1)."""
        codes = self.codes.get(purpose)
        if codes is None:
            return np.zeros(len(positions), dtype=np.int8)
        out = codes[np.maximum(positions, 0)] if len(codes) else np.zeros(len(positions),
                                                                           np.int8)
        return np.where(positions >= 0, out, NO_RECORD).astype(np.int8)

    def records(self, subject: str) -> list[dict[str, Any]]:
        """The winning events of one subject (for ``conn explain``)."""
        return _listed(self.events.filter(pc.equal(self.events.column(self.key), subject)))

    def identity_records(self, subject: str) -> list[dict[str, Any]]:
        """Per identity and purpose of one subject, the latest event (``decided``: it is
        the one that counts); empty unless the index resolves profiles."""
        if self.by_identity is None:
            return []
        mine = self.by_identity.filter(pc.equal(self.by_identity.column(self.key), subject))
        return _listed(mine.sort_by([("purpose", "ascending"), ("identity_type", "ascending"),
                                     ("identity", "ascending")]))


def _listed(rows: pa.Table) -> list[dict[str, Any]]:
    """Events as dicts for reports: the code as its decision, times as ISO 8601, no
    empty values."""
    out = []
    for r in rows.to_pylist():  # one subject's few events, for a report
        r["decision"] = REASONS[int(r.pop("code"))]
        ts = r.get("timestamp")
        r["timestamp"] = ts.isoformat() if hasattr(ts, "isoformat") else ts
        out.append({k: v for k, v in r.items() if v is not None})
    return out


def timestamp_sql(t: pa.DataType, column: str = "ts") -> str:
    """DuckDB expression reading ``column`` of Arrow type ``t`` as a TIMESTAMPTZ: Arrow
    timestamps and dates, epoch seconds, or ISO 8601 text (no offset: the session's time
    zone, which conn sets to UTC); NULL where unreadable."""
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return f"CAST({column} AS TIMESTAMPTZ)"
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return f"to_timestamp(CAST({column} AS DOUBLE))"
    return f"TRY_CAST(CAST({column} AS VARCHAR) AS TIMESTAMPTZ)"


#: How events compete (DuckDB ``ORDER BY``): an event without a readable time first (it
#: counts as the latest), then the latest, then the most restrictive code.
WINNER_ORDER = "(timestamp IS NULL) DESC, timestamp DESC, code DESC"


def prepare_events(name: str, spec: dict[str, Any], table: pa.Table, *,
                   file: str | None = None) -> pa.Table:
    """A consent source's events (``table``, declared by ``spec``, the
    ``consent_sources.NAME`` entry) as columns ``subject``, ``purpose``, ``status``,
    ``ts`` (as read), ``code``, ``jurisdiction`` and ``legal_basis``. Raises
    :class:`ConfigError` naming each column the table lacks."""
    cols = {k: spec.get(k, d) for k, d in COLUMN_KEYS.items()}
    missing = [ConfigError(f"consent source {name!r}: stream has no column {c!r} "
                           f"(columns: {', '.join(table.column_names)})",
                           file=file, path=f"consent_sources.{name}.{k}")
               for k, c in cols.items() if c is not None and c not in table.column_names]
    if missing:
        from conn.errors import ConfigErrors

        raise missing[0] if len(missing) == 1 else ConfigErrors(missing)
    status = table.column(cols["status"])
    codes = classify(status)
    codes[codes == NO_RECORD] = MALFORMED  # an event without a status cannot grant
    return pa.table({
        "subject": table.column(cols["subject"]).cast(pa.string()),
        "purpose": table.column(cols["purpose"]).cast(pa.string()),
        "status": status.cast(pa.string()) if not pa.types.is_string(status.type) else status,
        "ts": table.column(cols["timestamp"]),
        "code": pa.array(codes, pa.int8()),
        "jurisdiction": (table.column(cols["jurisdiction"]).cast(pa.string())
                         if cols["jurisdiction"] else pa.nulls(table.num_rows, pa.string())),
        "legal_basis": (table.column(cols["legal_basis"]).cast(pa.string())
                        if cols["legal_basis"] else pa.nulls(table.num_rows, pa.string())),
    })


def events_sql(ev: pa.Table, relation: str = "ev", extra: str = "") -> str:
    """DuckDB ``SELECT`` over prepared events (:func:`prepare_events`, registered as
    ``relation``) with their time read (``timestamp``) and an event without a readable
    time made at least malformed; ``extra`` adds columns (a leading comma)."""
    ts = timestamp_sql(ev.schema.field("ts").type)
    return f"""SELECT subject, purpose, status, {ts} AS timestamp, jurisdiction,
                   legal_basis, CAST(CASE WHEN {ts} IS NULL THEN greatest(code, {MALFORMED})
                                     ELSE code END AS TINYINT) AS code{extra}
            FROM {relation} WHERE subject IS NOT NULL AND purpose IS NOT NULL"""


def load_index(name: str, spec: dict[str, Any], table: pa.Table, *,
               file: str | None = None) -> ConsentIndex:
    """Resolve a consent source's events (``table``) declared by ``spec`` (the
    ``consent_sources.NAME`` entry), per subject and purpose. Raises
    :class:`ConfigError` naming each column the table lacks."""
    ev = prepare_events(name, spec, table, file=file)
    con = duckdb_connection()
    con.execute("SET TimeZone = 'UTC'")  # type: ignore[attr-defined]
    rel = con.from_arrow(ev)  # type: ignore[attr-defined]
    resolved = rel.query("ev", f"""
        SELECT * FROM ({events_sql(ev)})
        QUALIFY row_number() OVER (PARTITION BY subject, purpose
                                   ORDER BY {WINNER_ORDER}) = 1
        """).to_arrow_table()
    return index_of(name, resolved, "subject")


def index_of(name: str, resolved: pa.Table, key: str) -> ConsentIndex:
    """The :class:`ConsentIndex` of resolved events (one winning event per ``key`` and
    purpose, with ``purpose``, ``code``, ``legal_basis`` and ``timestamp`` columns)."""
    key_col = resolved.column(key).combine_chunks() if resolved.num_rows \
        else pa.array([], pa.string())
    h_all = np.asarray(sql_over(key_col, "hash(v)").to_numpy(), dtype=np.uint64) \
        if len(key_col) else np.empty(0, np.uint64)
    subject_col = key_col
    # Subjects sorted by hash; the inverse maps each resolved row to its subject slot.
    hashes, first, inverse = np.unique(h_all, return_index=True, return_inverse=True)
    subjects = subject_col.take(pa.array(first, pa.int64()))
    if len(subject_col) and not pc.all(pc.equal(
            subject_col, subjects.take(pa.array(inverse, pa.int64())))).as_py():
        # Two different subjects share a 64-bit hash: use exact (slower) slots.
        subjects = pc.unique(subject_col)
        inverse = np.asarray(pc.index_in(subject_col, value_set=subjects).to_numpy(),
                             dtype=np.int64)
        hashes = np.empty(0, np.uint64)
    purpose_col = resolved.column("purpose").combine_chunks() if resolved.num_rows \
        else pa.array([], pa.string())
    code_all = np.asarray(resolved.column("code").to_numpy(), dtype=np.int8)
    basis_all = resolved.column("legal_basis").combine_chunks() if resolved.num_rows \
        else pa.array([], pa.string())
    by_code: dict[str, np.ndarray] = {}
    bases: dict[str, pa.Array] = {}
    winners: dict[str, np.ndarray] = {}
    for purpose in pc.unique(purpose_col).to_pylist():  # a loop per purpose, not per row
        rows = np.asarray(pc.equal(purpose_col, purpose).to_numpy(zero_copy_only=False),
                          dtype=bool)
        slots = inverse[rows]
        arr = np.zeros(len(subjects), dtype=np.int8)
        arr[slots] = code_all[rows]
        by_code[purpose] = arr
        scatter = np.full(len(subjects), -1, dtype=np.int64)
        scatter[slots] = np.nonzero(rows)[0]
        bases[purpose] = basis_all.take(pa.array(scatter, mask=scatter < 0))
        winners[purpose] = scatter
    if len(hashes) == len(subjects):  # already sorted by hash: no second pass
        return ConsentIndex(name, subjects, by_code, bases, resolved, hashes,
                            np.arange(len(subjects), dtype=np.int64), winners, key=key)
    return ConsentIndex(name, subjects, by_code, bases, resolved, rows=winners, key=key)
