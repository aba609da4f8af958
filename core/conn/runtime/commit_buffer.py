"""Acknowledgements of a streaming micro-batch, gathered for one state commit.

A batch sync commits each answered request at once (a crash re-sends at most the
requests in flight). A streaming sync commits a micro-batch's answered requests together:
when the micro-batch is answered (its position is saved right after), or earlier once
one window of requests (``concurrency`` x ``batch_size`` records) waits; a few state
transactions per micro-batch instead of one per request, which is where a follower's
time went (docs/performance.md, ``pg_stream``). A crash then re-sends at most the
requests in flight and one window answered since the last commit, every record under
its original idempotency key (:mod:`conn.runtime.stream_state`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from conn.state.contracts import SyncState


@dataclass
class _Part:
    keys: pa.Array
    hashes: pa.Array
    match_values: pa.Array
    acknowledged: pa.Array
    rejected: list[tuple[int, str]]
    excerpts: dict[int, str]


@dataclass
class CommitBuffer:
    """:meth:`add` takes the arguments of :meth:`SyncState.commit`; :meth:`flush` commits
    everything added in as few calls as the match values' types allow (one per type:
    the state stores one type per commit; a micro-batch holds each key once, so the
    order between the calls does not matter)."""

    parts: list[_Part] = field(default_factory=list)

    def add(self, keys: pa.Array, hashes: pa.Array, match_values: pa.Array,
            acknowledged: pa.Array, rejected: list[tuple[int, str]],
            excerpts: dict[int, str] | None = None) -> None:
        """Hold one commit's arguments until :meth:`flush`."""
        if len(keys):
            self.parts.append(_Part(keys, hashes, match_values, acknowledged, rejected,
                                    excerpts or {}))

    def __len__(self) -> int:
        return sum(len(p.keys) for p in self.parts)

    def flush(self, st: SyncState) -> None:
        """Commit what was added, then forget it."""
        parts, self.parts = self.parts, []
        groups: dict[tuple[pa.DataType, pa.DataType, pa.DataType], list[_Part]] = {}
        for p in parts:
            sig = (p.keys.type, p.hashes.type, p.match_values.type)
            groups.setdefault(sig, []).append(p)
        for group in groups.values():
            rejected: list[tuple[int, str]] = []
            excerpts: dict[int, str] = {}
            at = 0
            for p in group:
                rejected.extend((at + i, reason) for i, reason in p.rejected)
                excerpts.update((at + i, text) for i, text in p.excerpts.items())
                at += len(p.keys)
            st.commit(_concat([p.keys for p in group]), _concat([p.hashes for p in group]),
                      _concat([p.match_values for p in group]),
                      _concat([p.acknowledged for p in group]), rejected, excerpts)


def _concat(arrays: list[pa.Array]) -> pa.Array:
    if len(arrays) == 1:
        return arrays[0]
    return pa.concat_arrays([a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
                             for a in arrays])
