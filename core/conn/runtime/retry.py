"""Retrying a sync's rejected rows only (``conn retry SYNC``, the UI's "Retry rejected").

A normal run sends again every rejected row along with everything else that changed.
A retry (:attr:`~conn.runtime.options.RunOptions.rejected_only`) reads the whole source
and keeps only the rows whose primary key is currently rejected for the sync (one
vectorised ``is_in`` per batch); they then take the one path every row takes to a
destination: the consent gate (a person who withdrew is withheld, not sent), the
mapper and the planner. The run is recorded like any other, marked ``rejected_only``.

What a retry leaves alone: the source's bookmark (rows after it were not sent), deletes
(mirror mode: the rest of the source was not read as a set) and the rejections of rows
it did not send (a key that left the source stays listed until the next full run).
Rows rejected without a primary key cannot be found again and are not retried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from conn.keys import key_array
from conn.source import SourceState

if TYPE_CHECKING:
    from conn.state.contracts import StateStore


def rejected_keys(store: StateStore, sync: str, state_of: Callable[[], Any] | None = None
                  ) -> pa.Array:
    """The primary keys (as stored: text) of the rows currently rejected for ``sync``.
    ``state_of`` (the run's opening state) is waited for first: a run's own readers
    then share its connection."""
    if state_of is not None:
        state_of()
    keys = {r["key"] for r in store.rejections(sync) if r.get("key") is not None}
    return pa.array(sorted(keys), pa.string())


def only_rejected(items: Iterable[pa.RecordBatch | SourceState], keys: pa.Array,
                  primary_key: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """The batches of a source read, cut to the rows whose key is in ``keys``; empty
    batches and bookmarks are dropped. Nothing is read when ``keys`` is empty."""
    if not len(keys):
        return
    for item in items:
        if isinstance(item, SourceState) or not item.num_rows:
            continue
        mask = pc.fill_null(pc.is_in(key_array(item, primary_key), value_set=keys), False)
        if pc.any(mask).as_py():
            yield item.filter(mask)
