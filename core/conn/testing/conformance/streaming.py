"""The streaming section of the source conformance suite: checks of a
:class:`~conn.streaming.StreamingSource` (see :func:`conn.testing.conformance.source_suite`,
``changes=``).

The plugin gives ``changes(ctx, round) -> count``: make the source produce ``count``
new changes of the followed stream (insert rows into the table, publish messages), a
different set each ``round``. The checks then follow the stream as the runtime does:

* positions never go back and survive a JSON round trip (they are stored as JSON);
* a quiet stream still yields (empty batches) within the ``wait`` it was given;
* nothing is let go upstream before :meth:`acknowledge`: changes read but not
  acknowledged come back when the stream is opened again from the source's own cursor;
* resuming from the last acknowledged position redelivers only what came after it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conn.streaming import ChangeBatch
    from conn.testing.conformance._common import ConfigArg, SuiteContext

#: Seconds a check waits for the changes it made to arrive.
ARRIVAL_SECONDS = 30.0
WAIT = 0.2


def _collect(changes: Iterator[ChangeBatch], rows: int) -> list[ChangeBatch]:
    """Batches until they hold ``rows`` changes (heartbeats included in the list)."""
    out, got, end = [], 0, time.monotonic() + ARRIVAL_SECONDS
    while got < rows:
        assert time.monotonic() < end, f"only {got} of {rows} changes arrived"
        batch = next(changes)
        out.append(batch)
        got += batch.rows
    assert got == rows, f"{got} changes arrived where {rows} were made"
    return out


class StreamingChecks:
    """Mixed into the source suite; every check skips unless ``changes=`` is given."""

    changes: Callable[[SuiteContext, int], int] | None = None
    changes_stream: str | None = None
    changes_config: ConfigArg | None = None

    def _follow(self, ctx: SuiteContext, position: Any, *,
                started: bool = True) -> tuple[Any, Generator[ChangeBatch, None, None]]:
        from conn.streaming import is_streaming

        if self.changes is None:
            pytest.skip("no changes= given: the source is not checked as a change stream")
        src = self.make(ctx, self.changes_config)  # type: ignore[attr-defined]
        assert is_streaming(src), "changes= given, but the source is no StreamingSource"
        stream = src.stream(self.changes_stream or self.stream)  # type: ignore[attr-defined]
        gen = src.follow(stream, position, wait=WAIT)
        if started:
            assert next(gen).rows == 0, "a new stream delivered changes made before it"
        return src, gen

    def _make(self, ctx: SuiteContext, round_: int) -> int:
        assert self.changes is not None
        return self.changes(ctx, round_)

    def test_stream_positions_monotonic_and_json(self, ctx: SuiteContext) -> None:
        """Positions never go back (``position_key``) and survive a JSON round trip."""
        src, gen = self._follow(ctx, None)
        try:
            batches = _collect(gen, self._make(ctx, 1)) + _collect(gen, self._make(ctx, 2))
        finally:
            gen.close()
            src.close()
        keys = [src.position_key(json.loads(json.dumps(b.position))) for b in batches]
        assert keys == sorted(keys), f"positions went back: {[b.position for b in batches]}"

    def test_stream_yields_while_quiet(self, ctx: SuiteContext) -> None:
        """With nothing new, ``changes`` still yields (an empty batch) within about
        ``wait`` seconds, so the runtime can close a micro-batch on time."""
        src, gen = self._follow(ctx, None)
        try:
            t0 = time.monotonic()
            batch = next(gen)
            took = time.monotonic() - t0
        finally:
            gen.close()
            src.close()
        assert batch.rows == 0
        assert took < WAIT + 2.0, f"a quiet stream blocked {took:.1f} s (wait was {WAIT})"

    def test_stream_unacknowledged_changes_come_back(self, ctx: SuiteContext) -> None:
        """Changes read but not acknowledged are not lost: opened again from the source's
        own cursor (position None), the stream delivers them (and not the acknowledged
        ones, when the source keeps a cursor of its own)."""
        src, gen = self._follow(ctx, None)
        try:
            first = _collect(gen, self._make(ctx, 1))
            src.acknowledge(first[-1].position)
            unacked = self._make(ctx, 2)
            _collect(gen, unacked)
        finally:
            gen.close()
            src.close()
        src, gen = self._follow(ctx, None, started=False)
        try:
            got = 0
            end = time.monotonic() + ARRIVAL_SECONDS
            while got < unacked and time.monotonic() < end:
                got += next(gen).rows
        finally:
            gen.close()
            src.close()
        assert got >= unacked, f"{unacked - got} unacknowledged change(s) were lost"

    def test_stream_resumes_after_the_acknowledged_position(self, ctx: SuiteContext) -> None:
        """Resumed from the last acknowledged position (stored as JSON), the stream
        redelivers exactly the changes made after it."""
        src, gen = self._follow(ctx, None)
        try:
            first = _collect(gen, self._make(ctx, 1))
            stored = json.loads(json.dumps(first[-1].position))
            src.acknowledge(first[-1].position)
            later = self._make(ctx, 2)
            _collect(gen, later)
        finally:
            gen.close()
            src.close()
        src, gen = self._follow(ctx, stored, started=False)
        try:
            again = _collect(gen, later)
            time.sleep(WAIT * 2)
            extra = next(gen).rows
        finally:
            gen.close()
            src.close()
        assert sum(b.rows for b in again) + extra == later, "resuming redelivered more"
