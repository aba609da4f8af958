"""What a streaming sync keeps in its state's source bookmark: the position everything
is committed up to and, while a micro-batch is being sent, how far that micro-batch
reaches.

Why the reach is kept: a record's idempotency key derives from the payload the
destination acknowledged before and the payload sent (:mod:`conn.idempotency`), and
within a micro-batch only the last change of each key is sent. After a crash the source
redelivers everything after the saved position, and timing alone would group it into
other micro-batches: the insert of a row alone first, say, then its update, where the
lost micro-batch had sent the two as one record. The update would then go out from
another previous payload, under another key, and a receiver de-duplicating on the key
would see the same change twice.

So before any request of a micro-batch goes out, its reach (the position after its last
change and its number of changes, counted from the saved position) is stored with the
saved position, in one write. The first micro-batch after a restart is not closed before
it reaches as far (:meth:`StreamState.covers`): it holds every change the lost one held
(and perhaps later ones), in the same order, and is planned against the same committed
state, so each record it re-sends is the same change under the same key. A record that
changed again in between is a new change (new payload, new key) that supersedes the one
sent before; nothing is sent from a state the destination never had. Saving the
micro-batch's position once its acknowledgements are committed drops the reach.

Stored as ``{"conn_stream": 1, "position": P, "sending": {"to": Q, "changes": N}}``; a
bookmark stored by an earlier conn (the bare position) is read as a position with
nothing in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Marks a bookmark in this format (and its version).
TAG = "conn_stream"


@dataclass(frozen=True)
class StreamState:
    """The saved ``position`` and the reach of the micro-batch in flight after it
    (``sending_to``: the position after its last change; ``sending``: its number of
    changes; 0 when none is in flight)."""

    position: Any
    sending_to: Any = None
    sending: int = 0

    @classmethod
    def load(cls, value: Any) -> StreamState:
        """Read a stored bookmark (None: nothing stored yet)."""
        if isinstance(value, dict) and TAG in value:
            reach = value.get("sending") or {}
            return cls(value.get("position"), reach.get("to"), int(reach.get("changes", 0)))
        return cls(value)

    def stored(self) -> dict[str, Any]:
        """The bookmark to store (JSON-serialisable)."""
        out: dict[str, Any] = {TAG: 1, "position": self.position}
        if self.sending:
            out["sending"] = {"to": self.sending_to, "changes": self.sending}
        return out

    def covers(self, position: Any, changes: int, order: Callable[[Any], Any]) -> bool:
        """Whether a micro-batch starting at :attr:`position`, holding ``changes``
        changes up to ``position``, reaches at least as far as the one in flight
        (``order``: the source's :meth:`~conn.streaming.StreamingSource.position_key`).
        Past its end position it holds all of it; at the same position (a source that
        hands out a large transaction in parts keeps the position of the one before)
        it needs as many changes."""
        if not self.sending:
            return True
        here, there = order(position), order(self.sending_to)
        if here is None or there is None:
            return changes >= self.sending
        return bool(here > there or (here == there and changes >= self.sending))
