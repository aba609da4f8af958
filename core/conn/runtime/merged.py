"""Merges reach destinations: after a ``conn profiles build`` merged two profiles, an
``upsert`` or ``mirror`` sync over the set makes the destination keep one record of the
person (docs/profiles.md, "Merges reach destinations").

* Where the destination object declares a merge API (``Capabilities.merges``, e.g.
  HubSpot's contact merge), each absorbed profile delivered before is **merged** into
  its survivor (``merge`` requests, :meth:`conn.destination.Destination.merge_batch`),
  after this run's upserts, so the absorbed record's history (e-mails, notes, deals)
  stays with the person. Only when the survivor is at the destination now (delivered
  before or acknowledged in this run) **and passed the consent gate in this run**
  (planned: gated, held out of no experiment, mapped): a merge never reaches a person
  the gate withheld. Otherwise the absorbed record is deleted, as without a merge API.
  A merge acknowledged (or whose absorbed record the destination no longer has) takes
  the absorbed key out of the sync's state, as a delete would; a rejected or
  unconfirmed one keeps it there, is listed with the run's rejections and is tried
  again next run (the absorbed record is not deleted meanwhile).
* Otherwise the absorbed profiles' records are deleted: by an upsert sync (other records
  that left the set stay, as upsert mode keeps them), and by a mirror sync with every
  record that left.

:func:`watch` wraps the sync's state to see which survivors were planned and
acknowledged; the runner then asks :func:`absorbs` and :func:`deleting` what to delete
and calls :func:`send` to send the merges.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conn import secrets
from conn.runtime import delivery
from conn.state.contracts import Deletions, SyncState

if TYPE_CHECKING:
    from conn.config.model import SyncConfig
    from conn.runtime.lane import DeliveryLane
    from conn.runtime.runner import PreparedSync, SyncRunner
    from conn.state.contracts import BatchPlan

log = logging.getLogger("conn.runtime")

#: Absorbed records looked up per batch when the merges are prepared.
LOOKUP_ROWS = 10_000


def watch(p: PreparedSync, sync: SyncConfig, state_of: Callable[[], SyncState]
          ) -> Callable[[], SyncState]:
    """``state_of``, its state wrapped in a :class:`MergeWatch` when ``sync`` is a mirror
    sync over a profile set, or an upsert sync over one where merges absorbed profiles
    (unchanged otherwise). A destination that can neither delete nor merge keeps the absorbed
    records: the log says how many."""
    from conn.profiles.source import ProfilesSource, survivors

    if sync.mode not in ("upsert", "mirror") or not isinstance(p.source, ProfilesSource):
        return state_of
    absorbed = p.source.merged_away(p.stream)
    # A mirror sync is watched without merges too: it deletes every profile that left,
    # and a record a staying profile holds must not be.
    if not len(absorbed) and sync.mode == "upsert":
        return state_of
    caps = p.obj.capabilities
    if not caps.supports_delete and not caps.merges:
        if len(absorbed):
            log.warning("sync %s: %s cannot delete, so the records of %d merged profiles "
                        "stay there (docs/profiles.md)", sync.name, sync.destination,
                        len(absorbed))
        return state_of
    pairs = survivors(p.source, p.stream) if caps.merges and len(absorbed) else None
    made: list[MergeWatch] = []

    def opened() -> SyncState:
        if not made:
            made.append(MergeWatch(state_of(), absorbed, pairs, caps.supports_delete,
                                   upsert=sync.mode == "upsert", match_key=p.match_key))
        return made[0]

    return opened


def absorbs(st: SyncState) -> bool:
    """Whether records of absorbed profiles are to be deleted (an upsert sync)."""
    return isinstance(st, MergeWatch) and st.deletes


def deleting(st: SyncState) -> Callable[[Deletions], Deletions | None] | None:
    """What the deletion pass removes of each batch of records that left the set: the
    absorbed profiles' (upsert), every one (mirror), in both cases but those to be
    merged; None: every one."""
    if not isinstance(st, MergeWatch):
        return None
    merging = st.merging_keys()
    only = st.absorbed if st.upsert else None
    live = st.live_values()
    if only is None and not len(merging) and not len(live):
        return None
    return partial(_select, only=only, skip=merging, live=live)


def _select(gone: Deletions, *, only: pa.Array | None, skip: pa.Array,
            live: pa.Array) -> Deletions | None:
    keys = gone.keys.cast(pa.string())
    hit = pc.invert(pc.is_in(keys, value_set=skip))
    if only is not None:
        hit = pc.and_(hit, pc.is_in(keys, value_set=only))
    if len(live):
        # A record a profile of this run holds too (both matched on one value, say a
        # shared e-mail) is that profile's record at the destination: deleting it would
        # delete the person who stays.
        shared = pc.is_in(_array(gone.match_values).cast(pa.string()), value_set=live)
        hit = pc.and_(hit, pc.invert(shared.fill_null(False)))
    if not pc.any(hit).as_py():
        return None
    return type(gone)(*(col.filter(hit) for col in gone))


def send(runner: SyncRunner, p: PreparedSync, st: SyncState, lane: DeliveryLane) -> None:
    """Send the merges :class:`MergeWatch` prepared, one request at a time on the lane
    (each committed before the next), after the run's upserts and deletes."""
    if not isinstance(st, MergeWatch) or runner.report.status != "running":
        return
    for part in st.merges():
        go_on = lane.call(partial(_deliver, runner, p, st, part, time.monotonic()))
        if not go_on:
            return


class MergePart:
    """Pairs to merge: the absorbed profiles' keys, their match values and payload
    hashes (as the destination acknowledged them) and their survivors' match values."""

    def __init__(self, keys: pa.Array, absorbed: pa.Array, survivors: pa.Array,
                 hashes: pa.Array) -> None:
        self.keys, self.absorbed = _array(keys).cast(pa.string()), _array(absorbed)
        self.survivors, self.hashes = _array(survivors), _array(hashes)


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _deliver(runner: SyncRunner, p: PreparedSync, st: SyncState, part: MergePart,
             t0: float) -> bool:
    """One merge request (on the lane): acknowledged pairs leave the state as deleted
    keys; rejected ones are stored as rejections (listed, retried next run)."""
    rep, opts = runner.report, runner.options
    # The survivor already holds the absorbed record's match value (say both matched
    # on one e-mail): one record at the destination, nothing to merge.
    same = pc.equal(part.absorbed, part.survivors).fill_null(False)
    if pc.any(same).as_py() and not opts.dry_run:
        st.commit_deletes(part.keys.filter(same), same.filter(same), [])
    rest = pc.invert(same)
    keys, hashes = part.keys.filter(rest), part.hashes.filter(rest)
    request = delivery.merge_request(
        runner.sync.name, p.obj, part.absorbed.filter(rest), part.survivors.filter(rest),
        p.match_key, opts.dry_run, basis=delivery.basis(keys, None, hashes))
    if opts.dry_run:
        runner._preview(p.dest, request)
        rep.merged += len(part.keys)
        return True
    done = delivery.remove(p.dest, request, runner._writers, st, keys, rep)
    merged = (pc.sum(same).as_py() or 0) + done.acknowledged
    pending, error = done.pending, done.error
    rep.merged += merged
    rep.pending += pending
    runner._batch_done({"rows": len(part.keys), "merged": merged}, t0)
    if error is not None or pending:
        rep.status = "failed"
        rep.error = secrets.redact(f"merging in {runner.sync.destination!r} failed; "
                                   f"{pending} merge(s) left pending for the next run: "
                                   f"{error or 'not acknowledged'}")
        return False
    return True


class MergeWatch(SyncState):
    """A sync's state that notes which survivors of merges this run planned (they passed
    the consent gate and the mapper) and with which match values the destination
    acknowledged them; everything else is the wrapped state's. ``absorbed``: every id a
    merge absorbed; ``pairs``: ``old_id`` -> surviving ``new_id`` where the object
    merges (None: it deletes only); ``deletes``: whether it can delete; ``upsert``: an
    upsert sync (only absorbed records are deleted; a mirror sync deletes all that left).
    """

    def __init__(self, inner: SyncState, absorbed: pa.Array, pairs: pa.Table | None,
                 deletes: bool, *, upsert: bool, match_key: str = "") -> None:
        self.inner, self.absorbed, self.deletes, self.upsert = inner, absorbed, deletes, upsert
        self.match_key = match_key
        self._live: list[pa.Array] = []
        self.pairs = pairs if pairs is not None and pairs.num_rows else None
        self._survivors = (pc.unique(self.pairs.column("new_id").combine_chunks())
                           if self.pairs is not None else None)
        self._planned: list[pa.Array] = []
        self._acked: list[tuple[pa.Array, pa.Array]] = []
        self._merges: list[MergePart] | None = None

    def _of_survivors(self, keys: pa.Array) -> pa.Array:
        assert self._survivors is not None
        return pc.is_in(keys.cast(pa.string()), value_set=self._survivors)

    # --- noting survivors -------------------------------------------------------------

    def plan(self, keys: pa.Array, batch: pa.RecordBatch) -> BatchPlan:
        out = self.inner.plan(keys, batch)
        if self.match_key in batch.schema.names:
            self._live.append(pc.unique(batch.column(self.match_key).cast(pa.string())))
        if self._survivors is not None:
            self._planned.append(_array(keys).cast(pa.string()).filter(
                self._of_survivors(keys)))
        return out

    def commit(self, keys: pa.Array, hashes: pa.Array, match_values: pa.Array,
               acknowledged: pa.Array, rejected: list[tuple[int, str]],
               excerpts: Mapping[int, str] | None = None) -> None:
        self.inner.commit(keys, hashes, match_values, acknowledged, rejected, excerpts)
        if self._survivors is not None and len(keys):
            hit = pc.and_(self._of_survivors(keys), acknowledged.cast(pa.bool_()))
            hit = hit.fill_null(False)
            if pc.any(hit).as_py():
                self._acked.append((_array(keys).cast(pa.string()).filter(hit),
                                    _array(match_values).filter(hit)))

    def live_values(self) -> pa.Array:
        """The match values of the profiles this run planned (they passed the gate and
        the mapper): records holding them are not deleted."""
        if not self._live:
            return pa.array([], pa.string())
        return pc.unique(pa.concat_arrays(self._live)).drop_null()

    # --- the merges -------------------------------------------------------------------

    def merging_keys(self) -> pa.Array:
        """The absorbed keys to be merged (left out of the deletion pass)."""
        parts = self.merges()
        return (pa.concat_arrays([m.keys.cast(pa.string()) for m in parts]) if parts
                else pa.array([], pa.string()))

    def merges(self) -> list[MergePart]:
        """The pairs to merge, worked out once after the run's upserts: absorbed
        profiles the destination holds whose survivor passed the gate in this run and is
        at the destination."""
        if self._merges is None:
            self._merges = list(self._prepare()) if self.pairs is not None else []
        return self._merges

    def _prepare(self) -> Iterator[MergePart]:
        from conn.errors import StateError

        assert self.pairs is not None
        planned = (pc.unique(pa.concat_arrays(self._planned)) if self._planned
                   else pa.array([], pa.string()))
        pairs = self.pairs.filter(pc.is_in(self.pairs.column("new_id"), value_set=planned))
        if not pairs.num_rows:
            return
        try:
            where = self._survivor_values(planned)
            if where is None:
                return
            skeys, svalues = where
            for gone in self.inner.held(pairs.column("old_id").combine_chunks(),
                                        LOOKUP_ROWS):
                keys = _array(gone.keys).cast(pa.string())
                old = pairs.column("old_id").combine_chunks()
                new = pairs.column("new_id").take(pc.index_in(keys, value_set=old))
                at = pc.index_in(new, value_set=skeys)
                ok = pc.is_valid(at)
                if not pc.any(ok).as_py():
                    continue
                values = _array(gone.match_values)
                try:
                    surv = svalues.take(at.filter(ok)).cast(values.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    continue  # not comparable with what the absorbed record holds
                yield MergePart(keys.filter(ok), values.filter(ok), surv,
                                _array(gone.hashes).filter(ok))
        except StateError as exc:
            # A state backend that cannot look keys up: delete as without a merge API.
            log.warning("merges not sent (the state cannot look up records: %s); the "
                        "absorbed records are deleted instead", exc)

    def _survivor_values(self, planned: pa.Array) -> tuple[pa.Array, pa.Array] | None:
        """The match values of the planned survivors the destination holds: as
        acknowledged in this run, else as held from before."""
        keys = [k for k, _ in self._acked]
        values = [v for _, v in self._acked]
        known = pa.concat_arrays(keys) if keys else pa.array([], pa.string())
        older = planned.filter(pc.invert(pc.is_in(planned, value_set=known)))
        if len(older):
            for held in self.inner.held(older, LOOKUP_ROWS):
                keys.append(_array(held.keys).cast(pa.string()))
                values.append(_array(held.match_values))
        if not keys:
            return None
        kind = values[0].type
        try:
            joined = pa.concat_arrays([v.cast(kind) for v in values])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None  # match values of several types: in doubt, delete
        # The last acknowledgement of a key wins (index_in finds the first: reverse).
        all_keys = pa.concat_arrays(keys)
        order = pa.array(np.arange(len(all_keys) - 1, -1, -1, dtype=np.int64))
        return all_keys.take(order), joined.take(order)

    # --- the rest is the wrapped state's ---------------------------------------------

    def touch(self, keys: pa.Array) -> None:
        self.inner.touch(keys)

    def deletions(self, batch_rows: int, legacy_type: pa.DataType | None = None
                  ) -> Iterator[Deletions]:
        return self.inner.deletions(batch_rows, legacy_type)

    def commit_deletes(self, keys: pa.Array, acknowledged: pa.Array,
                       rejected: list[tuple[int, str]],
                       excerpts: Mapping[int, str] | None = None) -> None:
        self.inner.commit_deletes(keys, acknowledged, rejected, excerpts)

    def save_source_state(self, value: Any) -> None:
        self.inner.save_source_state(value)

    def source_state(self) -> Any:
        return self.inner.source_state()

    def rebase(self, keys: pa.Array | None = None) -> None:
        self.inner.rebase(keys)

    def held(self, keys: pa.Array, batch_rows: int,
             legacy_type: pa.DataType | None = None) -> Iterator[Deletions]:
        return self.inner.held(keys, batch_rows, legacy_type)

    def finish(self) -> None:
        self.inner.finish()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
