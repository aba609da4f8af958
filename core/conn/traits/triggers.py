"""Trigger transitions, vectorised (docs/traits.md, "Triggers").

For every row of a batch: the watched value now, and what the trigger stored for its
key (:mod:`conn.state.triggers`). Threshold triggers (``below``/``above``) fire when the
value is past the threshold while the trigger is armed and out of its cooldown; firing
disarms, and the value coming back to ``rearm`` arms again. A key seen for the first
time is armed unless already past the threshold, and never fires on that first sight.
Change triggers fire when the value differs from the one stored, out of cooldown. A
null value changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conn.config.traits import Trigger
from conn.keys import KEY_SEPARATOR


@dataclass
class Transition:
    """The verdict for one batch: ``fire`` (mask), ``write`` (mask: rows whose stored
    entry changes) and the new entries (:data:`conn.state.triggers.SCHEMA` columns
    without the key; the value as text by :meth:`value`), aligned with the batch."""

    fire: np.ndarray
    write: np.ndarray
    armed: np.ndarray
    fired_at: np.ndarray
    seq: np.ndarray
    #: The watched values now, whether each is present, and the stored ones (text).
    values: pa.Array
    present: np.ndarray
    prev: pa.Array

    def value(self, mask: np.ndarray) -> pa.Array:
        """The new stored value (text) of the rows of ``mask``: the value now, or the
        stored one when there is none now. Only these rows are cast to text."""
        m = pa.array(mask)
        now = self.values.filter(m)
        text = now if pa.types.is_string(now.type) else pc.cast(now, pa.string())
        return pc.if_else(pa.array(self.present[mask]), text, self.prev.filter(m))


def _bools(arr: pa.Array | pa.ChunkedArray, default: bool) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, default).to_numpy(zero_copy_only=False), dtype=bool)


def evaluate(trigger: Trigger, values: pa.Array, stored: pa.Table, now: float) -> Transition:
    """Apply ``trigger`` to ``values`` given ``stored`` (``known``, ``armed``,
    ``value``, ``fired_at``, ``seq`` aligned with them) at ``now`` (seconds)."""
    n = len(values)
    known = _bools(stored.column("known"), False)
    armed = _bools(stored.column("armed"), False)
    fired_at = pc.fill_null(stored.column("fired_at"), np.nan).to_numpy(
        zero_copy_only=False).astype(np.float64)
    seq = pc.fill_null(stored.column("seq"), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    prev = stored.column("value").combine_chunks() if isinstance(
        stored.column("value"), pa.ChunkedArray) else stored.column("value")
    present = ~np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    cool = np.isnan(fired_at) | (now - fired_at >= trigger.cooldown)
    if trigger.kind == "change":
        text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
        differs = _bools(pc.not_equal(text, prev), True)  # null before: a change
        fire = known & present & differs & cool
        new_armed = np.ones(n, dtype=bool)
        write = present & (~known | differs)
    else:
        v = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        v = np.nan_to_num(v, nan=0.0)  # nulls are masked by ``present``
        assert trigger.threshold is not None and trigger.rearm is not None
        if trigger.kind == "below":
            past, back = v < trigger.threshold, v >= trigger.rearm
        else:
            past, back = v > trigger.threshold, v <= trigger.rearm
        start = np.where(known, armed, ~past)
        ready = start | back
        fire = known & present & ready & past & cool
        new_armed = np.where(present, ready & ~fire, armed)
        write = present & (~known | (new_armed != armed) | fire)
    new_fired = np.where(fire, now, fired_at)
    new_seq = seq + fire.astype(np.int64)
    return Transition(fire, write, new_armed, new_fired, new_seq, values, present, prev)


def event_ids(trigger: str, keys: pa.Array, seq: np.ndarray) -> pa.Array:
    """One text per event (trigger, key, its number): what its id derives from, the
    same when a crossing is sent again after a crash."""
    parts = [pa.array([trigger] * len(keys), pa.string()), keys,
             pc.cast(pa.array(seq, pa.int64()), pa.string())]
    return pc.binary_join_element_wise(*parts, KEY_SEPARATOR)
