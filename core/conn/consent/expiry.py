"""Consent expiry (``consent.max_age``): a grant older than its purpose's maximum age
counts as no consent at all.

Per purpose with a ``max_age`` (:mod:`conn.config.durations`), a grant given at time
``t`` is valid up to and including ``t + max_age`` (months and years are calendar units)
and *expired* once the run's "now" is later. An expired grant becomes ``NO_RECORD``
before the column and the consent source are combined, so:

* a denial or an unreadable value anywhere still wins;
* a fresh grant from the other side (column or consent source) still grants;
* a legal basis declared for the purpose applies, as for any absent consent;
* a row withheld only because of expiry is reported with the reason ``expired``.

The time of a grant: the winning event's timestamp for a consent source (an event
without a readable time is already malformed); for a consent column, the column named by
``consent.granted_at.PURPOSE``. Without that column a column grant cannot expire
(``conn check`` warns); with it, a grant whose time is null or unreadable is malformed.

"Now" is the run's start (``SyncContext.now``); the environment variable ``CONN_NOW``
(ISO 8601, for tests) replaces it. Everything is computed over whole arrays: DuckDB adds
the durations (calendar months), numpy compares.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conn.config.durations import Duration, parse_duration
from conn.consent.events import ConsentIndex, timestamp_sql
from conn.consent.values import GRANTED, MALFORMED, NO_RECORD
from conn.duckdb_scan import duckdb_connection, sql_over
from conn.errors import ConfigError

if TYPE_CHECKING:
    from conn.config.model import SyncConfig
    from conn.consent.gate import ConsentGate
    from conn.sync_context import SyncContext

#: Environment variable replacing the run's "now" (tests only): ISO 8601, UTC if no offset.
ENV_NOW = "CONN_NOW"

#: The reason reported for rows withheld because their consent expired.
EXPIRED = "expired"


def run_now(started: datetime | None = None) -> datetime:
    """The instant expiry is judged at, as a naive UTC datetime: ``CONN_NOW`` if set,
    else ``started`` (the run's start), else the current time."""
    env = os.environ.get(ENV_NOW)
    if env:
        try:
            now = datetime.fromisoformat(env.strip())
        except ValueError:
            raise ConfigError(f"environment variable {ENV_NOW}={env!r} is not an ISO 8601 "
                              f"time (e.g. 2026-01-31T12:00:00Z)") from None
    else:
        now = started or datetime.now(UTC)
    return now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo else now


def utc_timestamps(array: pa.Array | pa.ChunkedArray, duration: Duration | None) -> pa.Array:
    """``array`` (timestamps, dates, epoch seconds or ISO 8601 text) as naive UTC
    timestamps, plus ``duration`` if given; null where unreadable."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if len(array) == 0:
        return pa.array([], pa.timestamp("us"))
    duckdb_connection().execute("SET TimeZone = 'UTC'")  # type: ignore[attr-defined]
    expr = f"timezone('UTC', {timestamp_sql(array.type, 'v')})"
    if duration is not None:
        expr = f"{expr} + {duration.sql()}"
    return sql_over(array, f"CAST({expr} AS TIMESTAMP)").cast(pa.timestamp("us"))


def _np_times(array: pa.Array) -> np.ndarray:
    """Naive timestamps as numpy datetime64[us] (NaT where null)."""
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype="datetime64[us]")


class ConsentExpiry:
    """The ``max_age`` rules of one sync, applied to a batch's consent codes."""

    def __init__(self, ctx: SyncContext, index: ConsentIndex | None) -> None:
        consent = dict(ctx.sync.consent or {})
        f = str(ctx.project.file)
        base = f"syncs.{ctx.sync.name}.consent"
        ages = consent.get("max_age") or {}
        self.max_age: dict[str, Duration] = {
            p: parse_duration(v, file=f, path=f"{base}.max_age.{p}")
            for p, v in (ages.items() if isinstance(ages, dict) else ())}
        self.columns: dict[str, str] = dict(consent.get("columns") or {})
        self.granted_at: dict[str, str] = dict(consent.get("granted_at") or {})
        self.now = run_now(ctx.now)
        self._now64 = np.datetime64(self.now, "us")
        self.index = index
        #: Per purpose, for each subject of the consent source: its grant expired.
        self._events_expired: dict[str, np.ndarray] = {}
        if index is not None:
            for purpose, age in self.max_age.items():
                rows = index.rows.get(purpose)
                if rows is None:
                    continue
                ts = index.events.column("timestamp").take(pa.array(rows, mask=rows < 0))
                ends = _np_times(utc_timestamps(ts, age))
                self._events_expired[purpose] = (index.codes[purpose] == GRANTED) & \
                    (ends < self._now64)

    def columns_read(self) -> set[str]:
        """The grant-time columns the gate reads."""
        return {c for p, c in self.granted_at.items() if p in self.columns}

    def expires_at(self, purpose: str, times: pa.Array) -> pa.Array | None:
        """When grants given at ``times`` expire for ``purpose`` (naive UTC timestamps;
        null where a time is unreadable), or None if the purpose has no ``max_age``."""
        age = self.max_age.get(purpose)
        return None if age is None else utc_timestamps(times, age)

    def is_expired(self, ends: pa.Array) -> np.ndarray:
        """Which expiry instants lie before "now" (null: False)."""
        return _np_times(ends) < self._now64

    def combine(self, purpose: str, batch: pa.RecordBatch, column_code: np.ndarray | None,
                event_code: np.ndarray | None, positions: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray]:
        """The purpose's combined code per row (expired grants count as ``NO_RECORD``,
        grants without a readable time as ``MALFORMED``; then the maximum of column and
        consent source) and which rows are ``NO_RECORD`` because a grant expired."""
        n = batch.num_rows
        expired = np.zeros(n, dtype=bool)
        code = np.zeros(n, dtype=np.int8)
        age = self.max_age.get(purpose)
        if column_code is not None:
            time_col = self.granted_at.get(purpose)
            if age is not None and time_col is not None:
                ends = _np_times(utc_timestamps(batch.column(time_col), age))
                granted = column_code == GRANTED
                old = granted & (ends < self._now64)
                column_code = np.where(old, NO_RECORD, column_code).astype(np.int8)
                column_code[granted & np.isnat(ends)] = MALFORMED
                expired |= old
            code = np.maximum(code, column_code)
        if event_code is not None:
            old_events = self._events_expired.get(purpose)
            if old_events is not None and positions is not None and len(old_events):
                old = (positions >= 0) & old_events[np.maximum(positions, 0)]
                event_code = np.where(old, NO_RECORD, event_code).astype(np.int8)
                expired |= old
            code = np.maximum(code, event_code)
        return code, expired & (code == NO_RECORD)


def expiry_issues(ctx: SyncContext) -> list[ConfigError]:
    """Configuration problems of ``max_age`` and ``granted_at``: a ``max_age`` for a
    purpose the sync does not have, a grant-time column the stream lacks or without a
    consent column."""
    consent = ctx.sync.consent or {}
    f, base = str(ctx.project.file), f"syncs.{ctx.sync.name}.consent"
    names = set(ctx.stream.schema.names)
    columns = dict(consent.get("columns") or {})
    errs = []
    # Like legal_basis (and unlike consent columns, which may serve other syncs of the
    # same stream), a max_age for a purpose the sync does not have is a mistake.
    for purpose in dict(consent.get("max_age") or {}):
        if purpose not in ctx.purposes:
            errs.append(ConfigError(f"max_age for {purpose!r}, which is not a purpose of "
                                    f"this sync ({', '.join(ctx.purposes) or 'none'})",
                                    file=f, path=f"{base}.max_age.{purpose}"))
    for purpose, col in dict(consent.get("granted_at") or {}).items():
        if purpose not in columns:
            errs.append(ConfigError(f"granted_at names the time of the consent column of "
                                    f"{purpose!r}, but consent.columns has none for it",
                                    file=f, path=f"{base}.granted_at.{purpose}"))
        elif col not in names:
            errs.append(ConfigError(f"grant time column {col!r} is not a column of stream "
                                    f"{ctx.stream.name!r}", file=f,
                                    path=f"{base}.granted_at.{purpose}"))
    return errs


def expiry_warnings(sync: SyncConfig) -> list[str]:
    """Where a ``max_age`` cannot apply: a consent column without a grant-time column
    (its grants never expire), or a purpose whose consent comes from nowhere."""
    consent = sync.consent if isinstance(sync.consent, dict) else {}
    columns = dict(consent.get("columns") or {})
    times = dict(consent.get("granted_at") or {})
    base = f"syncs.{sync.name}.consent"
    out = []
    for purpose in dict(consent.get("max_age") or {}):
        if purpose in columns and purpose not in times:
            out.append(f"{base}.max_age.{purpose}: max_age cannot be applied to consent "
                       f"column {columns[purpose]!r} (no grant time): name the column "
                       f"holding when it was given in {base}.granted_at.{purpose}")
        elif purpose not in columns and not consent.get("source"):
            out.append(f"{base}.max_age.{purpose}: no consent column or consent source "
                       f"for this purpose, so max_age never applies")
    return out


def withheld_by_expiry(gate: ConsentGate, batches: Iterable[tuple[pa.RecordBatch, pa.Array]]
                       ) -> dict[str, Any]:
    """Decide every row as a run would (without mapping or sending) and count, per
    purpose, the rows that expiry withholds: their consent expired and no legal basis
    lets them pass. ``batches`` yields ``(batch, primary keys)``."""
    rows = 0
    per_purpose = dict.fromkeys(gate.expiry.max_age, 0)
    for batch, keys in batches:
        d = gate.decide(batch, keys)
        rows += batch.num_rows
        for purpose in per_purpose:
            if purpose in d.expired:
                per_purpose[purpose] += int((d.expired[purpose] & ~d.ok[purpose]).sum())
    return {"rows": rows, "withheld": per_purpose,
            "now": gate.expiry.now.isoformat() + "Z"}


def as_utc_text(values: pa.Array) -> list[str | None]:
    """Naive UTC timestamps as ISO 8601 text with ``Z`` (for reports)."""
    if not len(values):
        return []
    whole = values.cast(pa.timestamp("s", tz="UTC"), safe=False)  # no fractions shown
    text = pc.strftime(whole, format="%Y-%m-%dT%H:%M:%SZ")
    return [None if v is None else str(v) for v in text.to_pylist()]
