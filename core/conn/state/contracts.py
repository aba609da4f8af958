"""The state contracts: what the runtime needs to diff, commit and resume, and what a
state backend implements.

State records only what a destination acknowledged, per sync, keyed by the source's
primary key (as a string): the payload hash of what was delivered and the destination's
match-key value with its type (needed to delete the record later), plus rejections, the
source's bookmark and the run history.

How to write a state backend
----------------------------

A backend stores; the planner, shared by every backend, plans. Implement two classes:

1. :class:`Storage`: one sync's records during one run. ``load`` (acknowledged key ids
   and payload hashes), ``commit`` (a batch's acknowledged rows and rejections, in one
   transaction), ``lookup`` (stored records by key id, for deletes), ``rejection_kids``
   and ``clear_rejections``, ``get_source_state`` and ``set_source_state``; optionally
   ``load_sorted`` (serve the planner's sorted state from a cache), ``group_commits``
   (many small commits follow: a streaming run) and ``finish`` (compact at the end of a
   run).
2. :class:`StateStore`: a project's state. ``open_sync`` takes the sync's lock (raise
   :class:`~conn.errors.SyncLocked` while another run holds it), settles the target
   (:func:`conn.state.target.decide`), follows the hash-canary policy
   (:func:`conn.state.planner.row_hashes.check_canary`) and yields
   ``PlanningSyncState(storage, run_id, full_resync=..., partitions=...)``
   (:class:`conn.state.planner.PlanningSyncState`, the :class:`SyncState` of every
   backend); ``record_run`` and ``runs`` keep the run history
   (:func:`conn.state.history.history_row`); ``rejections`` and ``stored_target`` serve
   ``conn rejected`` and the target checks.

Register a factory ``factory(url, project_dir) -> StateStore`` with the
``register_state_backends`` hook (see :mod:`conn.builtins`); a project selects it with
``state: {backend: NAME, url: ...}``. :mod:`conn.state.backends.memory` is the smallest
complete backend. The contract suite is ``tests/state/test_contract.py``: add the backend
to ``make_store`` and to the ``backend`` fixture in ``tests/state/conftest.py`` and every
contract test runs against it, with and without the compiled kernels.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from conn.state.experiments import ExperimentStore
    from conn.state.planner.sorted_state import LayeredState, SortedState
    from conn.state.target import OnChange, SyncTarget
    from conn.state.triggers import TriggerStore


#: The key id under which a backend stores rejections of rows without a primary key
#: (each such row keeps an entry of its own; see :meth:`Storage.commit`).
NULL_KEY_ID = 0

@dataclass
class BatchPlan:
    """The planner's verdict for one mapped batch. Index arrays point into the batch.

    ``hashes`` holds each row's payload hash (aligned with the batch); ``previous`` the
    hash the destination acknowledged last for each row of ``updates`` (aligned with
    ``updates``; it makes idempotency keys differ between two changes of one key);
    ``rejected`` holds rows refused before sending (duplicate or null primary key) with
    the reason.
    """

    inserts: pa.Array
    updates: pa.Array
    unchanged: int
    hashes: pa.Array
    rejected: list[tuple[int, str]] = field(default_factory=list)
    previous: pa.Array | None = None


class Deletions(NamedTuple):
    """One batch of records to delete (mirror mode): their primary keys, their match
    values with the type the destination received them with, and the payload hash the
    destination acknowledged last (for idempotency keys)."""

    keys: pa.Array
    match_values: pa.Array
    hashes: pa.Array


class SyncState(abc.ABC):
    """One sync's state during one run, opened under that sync's lock.

    Threads: the runner calls :meth:`plan`, :meth:`touch`, :meth:`deletions` and
    :meth:`finish` from the thread that opened the state, and :meth:`commit`,
    :meth:`commit_deletes` and :meth:`save_source_state` from its delivery thread, in
    order and one at a time, possibly while :meth:`plan` works on a later batch. Commits
    must therefore not share unsynchronised objects (e.g. a database connection) with
    planning. Deletions are the exception: the runner waits for each delete's commit
    before asking :meth:`deletions` for the next batch.
    """

    @abc.abstractmethod
    def plan(self, keys: pa.Array, batch: pa.RecordBatch) -> BatchPlan:
        """Hash each row of ``batch`` (exactly the mapped payload) and compare with what
        the destination last acknowledged for ``keys``: insert, update or unchanged. Marks
        the keys as seen in this run. With ``full_resync`` every valid row is an insert or
        update."""

    @abc.abstractmethod
    def touch(self, keys: pa.Array) -> None:
        """Mark keys as seen in this run without planning them (rows the mapper rejected:
        still in the source, so not to be deleted)."""

    @abc.abstractmethod
    def commit(self, keys: pa.Array, hashes: pa.Array, match_values: pa.Array,
               acknowledged: pa.Array, rejected: list[tuple[int, str]],
               excerpts: Mapping[int, str] | None = None) -> None:
        """Atomically record one written batch: ``acknowledged`` (boolean mask aligned
        with ``keys``) rows get their new hash and match value (kept with its Arrow type:
        a delete sends it back as the destination received it); ``rejected`` rows (index,
        reason) are stored as rejections of this run and retried next run, also when their
        key is null, each with its excerpt of the exchange that rejected it when
        ``excerpts`` (index -> JSON text) has one; rows neither acknowledged nor rejected
        are left as they were (they will be re-sent)."""

    @abc.abstractmethod
    def deletions(self, batch_rows: int, legacy_type: pa.DataType | None = None
                  ) -> Iterator[Deletions]:
        """After all batches: the records the destination holds whose key was not seen in
        this run (gone from the source or consent withdrawn). Each batch's match values
        share one type; values stored by a conn that kept only text are read as
        ``legacy_type`` where they parse as it."""

    @abc.abstractmethod
    def commit_deletes(self, keys: pa.Array, acknowledged: pa.Array,
                       rejected: list[tuple[int, str]],
                       excerpts: Mapping[int, str] | None = None) -> None:
        """Forget acknowledged deleted keys; store rejections of deletes (with their
        excerpts, as :meth:`commit`)."""

    @abc.abstractmethod
    def save_source_state(self, value: Any) -> None:
        """Store the source's bookmark (called only when every earlier batch is
        committed)."""

    @abc.abstractmethod
    def source_state(self) -> Any:
        """The last stored source bookmark, or None."""

    def rebase(self, keys: pa.Array | None = None) -> None:
        """Streaming runs: start a new pass. What this run committed so far becomes the
        state later batches are planned against (a key acknowledged earlier in the run
        is an update, not an insert), and no key counts as seen, so a key may come again.
        Called between micro-batches, once every earlier commit of their keys is done
        (commits of other keys may still run on another thread). ``keys``: the keys of
        the next batch, when known; only those may then be planned until the next
        rebase (a pass over a long run then costs what its batch does)."""
        from conn.errors import StateError

        raise StateError(f"{type(self).__name__} cannot plan a streaming run")

    def held(self, keys: pa.Array, batch_rows: int,
             legacy_type: pa.DataType | None = None) -> Iterator[Deletions]:
        """Streaming runs: the records the destination holds for ``keys`` (as acknowledged
        before or during this run), as :meth:`deletions` gives them: what a delete from
        the stream removes."""
        from conn.errors import StateError

        raise StateError(f"{type(self).__name__} cannot plan a streaming run")

    def finish(self) -> None:  # noqa: B027 - optional
        """Optional: declare the source completely read in this run (call after the last
        batch). Rejections of keys not seen in the run (gone from the source, consent
        withdrawn) are then cleared. :meth:`deletions` implies it once exhausted."""


class Storage(abc.ABC):
    """What a backend stores for one sync; the planner does the rest."""

    @abc.abstractmethod
    def load(self, partitions: frozenset[int] | None) -> tuple[np.ndarray, np.ndarray]:
        """Acknowledged ``(kids, hashes)`` of the partitions, sorted by kid if cheap."""

    @abc.abstractmethod
    def commit(self, run_id: str, rows: pa.Table, rejected: pa.Table, *,
               deletes: bool, match_type: str | None = None) -> None:
        """In one transaction: record ``rows`` (kid, key, hash, match_value as text,
        partition) as acknowledged (or as deleted when ``deletes``), with ``match_type``,
        the type token of their match values (:mod:`conn.state.typed_text`); store
        ``rejected`` (kid, key, partition, reason, excerpt; one row per key, except rows
        without a key, stored under :data:`NULL_KEY_ID`, one row each) as this run's
        rejections,
        replacing earlier runs' rejections of every key in either table (a key rejected
        again keeps the time of its first rejection and counts the runs in a row); a key
        already rejected in this run keeps that one entry, with the new reason appended
        to it (and the first excerpt it got); add the counts to the run's progress (a
        backend may hold the counters, diagnostics, for a later transaction: the DuckDB
        store writes them at most once a second and at the end of the run)."""

    @abc.abstractmethod
    def lookup(self, kids: np.ndarray, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Stored records of ``kids``, in batches with the columns ``key``,
        ``match_value`` (text), ``match_type`` (its type token, null when stored without
        one) and ``hash``."""

    @abc.abstractmethod
    def rejection_kids(self, partitions: frozenset[int] | None) -> np.ndarray:
        """Key ids with a stored rejection."""

    @abc.abstractmethod
    def clear_rejections(self, kids: np.ndarray) -> None:
        """Forget rejections of keys that left the source."""

    @abc.abstractmethod
    def get_source_state(self) -> str | None:
        """The stored bookmark (JSON text)."""

    @abc.abstractmethod
    def set_source_state(self, run_id: str, value: str) -> None:
        """Store the bookmark (JSON text)."""

    def load_sorted(self, partitions: frozenset[int] | None) -> SortedState | LayeredState:
        """The acknowledged state as a :class:`SortedState`; a backend may serve it from
        a cache instead of :meth:`load` and a rebuild (possibly a :class:`LayeredState`)."""
        from conn.state.planner.sorted_state import SortedState

        return SortedState(*self.load(partitions))

    def group_commits(self) -> None:  # noqa: B027 - optional
        """Optional: many small commits follow (a streaming run). A backend may then
        make each durable more cheaply than a transaction of its own, as long as every
        later call sees it and a crash loses none that returned."""

    def finish(self) -> None:  # noqa: B027 - optional
        """End of the run (success or not): compact, release resources."""


class StateStore(abc.ABC):
    """A project's state: per-sync records, rejections, run history and locks."""

    @abc.abstractmethod
    def open_sync(self, sync: str, run_id: str, *, full_resync: bool = False,
                  partitions: frozenset[int] | None = None,
                  target: SyncTarget | None = None, on_target_change: OnChange = None
                  ) -> AbstractContextManager[SyncState]:
        """Take the sync's lock (raise :class:`conn.errors.SyncLocked` if another run
        holds it) and return its state for this run. ``partitions`` (optional) opens
        only those partitions of the sync (:func:`conn.state.partition_of_keys`):
        their state, their deletions, their locks; ``None`` opens the whole sync.

        ``target`` is what the run delivers to; the store compares it with the identity
        stored with the state and acts as :func:`conn.state.target.decide` says (refuse
        a changed target, start it from scratch, or record the new identity)."""

    @abc.abstractmethod
    def record_run(self, sync: str, run_id: str, report: dict[str, Any]) -> None:
        """Store a finished (or failed) run's report in the run history."""

    @abc.abstractmethod
    def runs(self, sync: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Past runs, newest first."""

    @abc.abstractmethod
    def rejections(self, sync: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Current rejections of a sync, newest first: ``key`` (text as stored, None for
        a row without a primary key), ``reason``, ``op``, ``run_id``, ``at`` (this
        rejection), ``since`` (the first of the key's rejections in a row),
        ``attempts`` (ISO 8601 UTC times) and ``excerpt`` (JSON text of the vendor
        exchange that rejected it, see :mod:`conn.http.exchange`; None without one)."""

    @abc.abstractmethod
    def stored_target(self, sync: str) -> str | None:
        """The target identity stored with the sync's state (JSON text of
        :meth:`conn.state.target.SyncTarget.to_json`), or None."""

    @abc.abstractmethod
    def bound_target(self, sync: str) -> str | None:
        """The stored target identity if the sync's state holds anything (records,
        rejections or a bookmark: the target is bound), else None. Read-only: a run
        checks every sync's target with it before any sync sends a row."""

    def check_target(self, sync: str, target: SyncTarget, on_change: OnChange = None
                     ) -> None:
        """Raise :class:`conn.state.target.TargetChanged` if opening ``sync`` for
        ``target`` would be refused (read-only; :meth:`open_sync` decides again)."""
        from conn.state.target import decide

        decide(sync, self.bound_target(sync), target, on_change, has_state=True)

    @abc.abstractmethod
    def delivered(self, sync: str, keys: list[str]) -> list[dict[str, Any]]:
        """What the destination acknowledged for these primary keys (as stored, text):
        ``key``, ``match_value`` (text), ``match_type`` (its type token, None when
        stored without one), ``acked_at`` (ISO 8601 UTC: the last acknowledged change),
        ``first_acked_at`` (ISO 8601 UTC: the first acknowledged delivery of the key
        since it was last deleted; None if the backend does not know it) and
        ``run_id``; keys it does not hold are left out. For ``conn explain`` and access
        reports."""

    def notes(self) -> Notes | None:
        """Small documents the project keeps beside its run history (:class:`Notes`: the
        last alert per rule and sync), or None for a backend that cannot keep them."""
        return None

    def privacy(self) -> PrivacyStore | None:
        """What ``conn forget`` keeps here (:class:`PrivacyStore`), or None for a backend
        that cannot keep it: ``conn forget`` then refuses to run, so such a backend
        never holds a suppression entry the consent gate would miss."""
        return None

    def experiment_store(self) -> ExperimentStore | None:
        """Holdout experiments kept here (:mod:`conn.state.experiments`), or None for a
        backend that cannot keep them: a sync with a ``holdout:`` then refuses to run."""
        return None

    def trigger_state(self, sync: str, trigger: str) -> TriggerStore | None:
        """Where ``trigger`` keeps what it saw of each key of ``sync``
        (:class:`conn.state.triggers.TriggerStore`; the caller closes it), or None for a
        backend that cannot keep it: a sync sending a trigger's events is then refused.
        Call it while holding the sync's lock (:meth:`open_sync`)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""


class Notes(abc.ABC):
    """Small JSON documents kept by ``(topic, key)`` in a project's state store, shared by
    every process using it: what :mod:`conn.alerts` last sent per rule and sync. Each
    method is one transaction; a write replaces the document (last writer wins)."""

    @abc.abstractmethod
    def read(self, topic: str) -> dict[str, dict[str, Any]]:
        """Every document of ``topic`` by key (empty when none was written)."""

    @abc.abstractmethod
    def write(self, topic: str, key: str, document: dict[str, Any]) -> None:
        """Store ``document`` (JSON-serialisable) under ``(topic, key)``."""


def chain_hash(previous: str, body: str) -> str:
    """The hash of a privacy ledger entry: SHA-256 (hex) of the previous entry's hash and
    this entry's body (canonical JSON text). The first entry's previous hash is
    :data:`LEDGER_ROOT`."""
    import hashlib

    return hashlib.sha256(f"{previous}\n{body}".encode()).hexdigest()


#: The "previous hash" of a ledger's first entry.
LEDGER_ROOT = "0" * 64

#: Columns of a pending erasure (:meth:`PrivacyStore.add_pending`): its id, the receipt
#: and target (index in the receipt) it belongs to, the sync, the match value as text
#: with its type token (:mod:`conn.state.typed_text`), the HMAC of the record's primary
#: key (what its idempotency keys derive from) and the payload hash the destination
#: acknowledged last.
PENDING_COLUMNS = ("id", "receipt_id", "target", "sync", "match_value", "match_type",
                   "key_digest", "hash")


class PrivacyStore(abc.ABC):
    """What ``conn forget`` keeps in a project's state store (``docs/privacy.md``).

    * the project's **salt** (random, created once; the HMAC key of the suppression list);
    * the **suppression list**: HMAC-SHA256 digests of forgotten people's identifiers,
      which the consent gate withholds;
    * **pending erasures**: the match values a destination has not yet confirmed erasing
      (kept only until it does);
    * the **ledger**: receipts as an append-only, hash-chained list of entries.

    It also finds and purges a subject in the syncs' own state. Every method is one
    transaction."""

    @abc.abstractmethod
    def salt(self, create: bool = True) -> bytes | None:
        """The project's salt; created (once, atomically) when missing and ``create``."""

    @abc.abstractmethod
    def suppressed(self) -> pa.Array:
        """Every suppressed digest (hex), as an Arrow string array."""

    @abc.abstractmethod
    def suppress(self, digests: list[str], receipt_id: str) -> None:
        """Add digests to the suppression list (already listed ones are kept once)."""

    @abc.abstractmethod
    def find(self, sync: str, exact: list[str], emails: list[str]) -> list[dict[str, Any]]:
        """A sync's acknowledged records whose primary key or match value is one of
        ``exact``, or whose match value, trimmed and lowercased, is one of ``emails``:
        ``key``, ``match_value`` (text), ``match_type`` (token or None), ``hash``."""

    @abc.abstractmethod
    def purge(self, sync: str, keys: list[str], texts: list[str], *,
              retired_only: bool = False) -> None:
        """Remove ``keys`` from the sync's state (records, change log, rejections) and
        every rejection whose reason mentions one of ``texts``, leaving no copy of them in
        the files the backend writes; from the sync's retired states (``--new-target``),
        remove records whose key or match value (trimmed, lowercased) is one of
        ``keys``. Nothing to do when ``keys`` is empty. ``retired_only``: leave the
        sync's current state alone (and its lock: a run may hold it)."""

    @abc.abstractmethod
    def scrub_history(self, texts: list[str], scrub: Callable[[str], str]) -> None:
        """Rewrite every stored run report mentioning one of ``texts`` (a substring
        test) as ``scrub(report JSON text)``, leaving no copy of the old text."""

    @abc.abstractmethod
    def pending(self) -> list[dict[str, Any]]:
        """Pending erasures (:data:`PENDING_COLUMNS`), oldest first."""

    @abc.abstractmethod
    def add_pending(self, rows: list[dict[str, Any]]) -> None:
        """Store pending erasures (dicts with :data:`PENDING_COLUMNS`)."""

    @abc.abstractmethod
    def settle(self, ids: list[str]) -> None:
        """Forget pending erasures the destination confirmed (their match values go)."""

    @abc.abstractmethod
    def ledger(self) -> list[dict[str, Any]]:
        """Every ledger entry in order: ``seq``, ``receipt_id``, ``body``, ``prev``,
        ``hash``."""

    @abc.abstractmethod
    def append(self, receipt_id: str, body: str) -> dict[str, Any]:
        """Append an entry after the current last one (atomically: two writers never
        chain to the same entry), its hash :func:`chain_hash` of the last entry's hash
        (:data:`LEDGER_ROOT` for the first) and ``body``; return it."""
