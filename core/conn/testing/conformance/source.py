"""The conformance suite of a source plugin (see :mod:`conn.testing.conformance`)."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import pyarrow as pa

    from conn.source import Source, StreamInfo

from conn.testing.conformance._common import (
    HEAVY_MODULES,
    ConfigArg,
    SuiteContext,
    _build,
    _caller_module,
    _Common,
    _static,
)
from conn.testing.conformance.streaming import StreamingChecks

# --- sources ---------------------------------------------------------------------------------


def _key_tuples(table: pa.Table, key: Sequence[str]) -> list[tuple[Any, ...]]:
    cols = [table.column(k).to_pylist() for k in key]
    return list(zip(*cols, strict=True)) if cols else []


def _norm_rows(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    return sorted(json.dumps(dict(r), sort_keys=True, default=str) for r in rows)


class _SourceSuite(_Common, StreamingChecks):
    """Source checks (see :func:`source_suite`); the streaming ones are in
    :mod:`conn.testing.conformance.streaming`."""

    group = "conn.sources"
    stream: str = ""
    expected_rows: Sequence[Mapping[str, Any]] | None = None
    batch_rows: int | None = None
    memory_config: ConfigArg | None = None
    memory_stream: str | None = None
    memory_slack_bytes: int = 32 * 1024 * 1024
    memory_batches_factor: int = 4

    def exercise(self, ctx: SuiteContext) -> None:
        from conn.testing.harness import read_all

        with self.make(ctx) as src:
            src.check()
            src.discover()
            read_all(src, self.stream)

    def test_discover_schemas_and_keys(self, ctx: SuiteContext) -> None:
        """Every stream has a unique name, an Arrow schema and a primary key made of its
        columns (required for the suite's stream, which must be among them; others may
        leave it to the sync's ``primary_key``)."""
        import pyarrow as pa

        with self.make(ctx) as src:
            streams = src.discover()
        assert streams, "discover() returned no stream"
        names = [s.name for s in streams]
        assert len(set(names)) == len(names), f"duplicate stream names: {names}"
        assert self.stream in names, f"stream {self.stream!r} not discovered: {names}"
        for s in streams:
            assert isinstance(s.schema, pa.Schema), f"stream {s.name!r}: schema is not Arrow"
            if s.name == self.stream:
                assert s.primary_key, f"stream {s.name!r} has no primary key"
            missing = [k for k in s.primary_key if k not in s.schema.names]
            assert not missing, f"stream {s.name!r}: primary key {missing} not in columns"
            if s.cursor is not None:
                assert s.cursor in s.schema.names, f"stream {s.name!r}: unknown cursor"

    def _stream_info(self, src: Source) -> StreamInfo:
        return src.stream(self.stream)

    def test_read_returns_expected_rows(self, ctx: SuiteContext) -> None:
        """A full read returns the discovered columns (and ``expected_rows``)."""
        from conn.testing.harness import read_all

        with self.make(ctx) as src:
            info = self._stream_info(src)
            table, _ = read_all(src, self.stream)
        assert set(info.schema.names) <= set(table.schema.names)
        for name in info.schema.names:
            assert table.schema.field(name).type == info.schema.field(name).type, (
                f"column {name!r}: read {table.schema.field(name).type}, discovered "
                f"{info.schema.field(name).type}")
        keys = _key_tuples(table, info.primary_key)
        assert len(set(keys)) == len(keys), "the read returned duplicate primary keys"
        if self.expected_rows is not None:
            cols = sorted({k for r in self.expected_rows for k in r})
            got = [{c: r.get(c) for c in cols} for r in table.to_pylist()]
            assert _norm_rows(got) == _norm_rows(self.expected_rows)

    def _batch_rows(self, total: int) -> int:
        return self.batch_rows or max(1, total // 3)

    def test_batches_bounded(self, ctx: SuiteContext) -> None:
        """With a small ``batch_rows`` every batch holds at most that many rows."""
        from conn.source import SourceState
        from conn.testing.harness import read_all

        with self.make(ctx) as src:
            total = read_all(src, self.stream)[0].num_rows
            limit = self._batch_rows(total)
            sizes = [item.num_rows for item in src.read(self._stream_info(src), None, limit)
                     if not isinstance(item, SourceState)]
        assert sum(sizes) == total, f"read {sum(sizes)} rows with batch_rows={limit}, " \
                                    f"{total} without"
        assert max(sizes, default=0) <= limit, f"batch of {max(sizes)} rows over {limit}"
        if total > limit:
            assert len(sizes) >= 2, "the stream came back as one batch"

    def test_read_memory_bounded(self, ctx: SuiteContext) -> None:
        """Peak memory of a streamed read (Python heap by tracemalloc, Arrow buffers by the
        memory pool, sampled per batch and by its high-water mark) stays under
        ``memory_batches_factor`` times the largest batch + ``memory_slack_bytes``."""
        import pyarrow as pa

        from conn.source import SourceState

        config = self.memory_config or self.config
        stream = self.memory_stream or self.stream
        with self.make(ctx, config) as src:
            info = src.stream(stream)
            limit = self.batch_rows or 10_000
            pool = pa.default_memory_pool()
            base_arrow, base_max = pa.total_allocated_bytes(), pool.max_memory()
            tracemalloc.start()
            tracemalloc.reset_peak()
            try:
                arrow_peak, largest, rows = 0, 0, 0
                for item in src.read(info, None, limit):
                    if isinstance(item, SourceState):
                        continue
                    rows += item.num_rows
                    largest = max(largest, item.nbytes)
                    arrow_peak = max(arrow_peak, pa.total_allocated_bytes() - base_arrow)
                    del item
                _, py_peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            after_max = pool.max_memory()
        if after_max is not None and base_max is not None and after_max > base_max:
            arrow_peak = max(arrow_peak, after_max - base_arrow)
        bound = self.memory_batches_factor * largest + self.memory_slack_bytes
        peak = arrow_peak + py_peak
        assert peak <= bound, (
            f"reading {rows} rows of {stream!r} peaked at {peak / 2**20:.1f} MiB (Arrow "
            f"{arrow_peak / 2**20:.1f}, Python {py_peak / 2**20:.1f}); bound "
            f"{bound / 2**20:.1f} MiB for batches of at most {largest / 2**20:.1f} MiB: "
            f"is the whole stream loaded at once?")

    def test_resumable_from_state(self, ctx: SuiteContext) -> None:
        """Bookmarks survive a JSON round trip (the state store keeps JSON); resuming from
        any bookmark, together with the rows read before it, loses no row."""
        import pyarrow as pa

        from conn.source import SourceState

        with self.make(ctx) as src:
            info = self._stream_info(src)
            key = info.primary_key
            seen: list[tuple[Any, ...]] = []
            checkpoints: list[tuple[Any, int]] = []
            total = 0
            for item in src.read(info, None, self._batch_rows(10**9)):
                if isinstance(item, SourceState):
                    checkpoints.append((item.value, len(seen)))
                else:
                    seen += _key_tuples(pa.Table.from_batches([item]), key)
                    total += item.num_rows
            if not checkpoints:
                pytest.skip("the source yields no bookmarks (full reads only)")
            # The first and the last bookmark (a middle one too when there are many).
            picks = {0, len(checkpoints) // 2, len(checkpoints) - 1}
            for value, before in (checkpoints[i] for i in sorted(picks)):
                stored = json.loads(json.dumps(value))
                rest: list[tuple[Any, ...]] = []
                for item in src.read(info, stored, self._batch_rows(10**9)):
                    if not isinstance(item, SourceState):
                        rest += _key_tuples(pa.Table.from_batches([item]), key)
                missing = set(seen) - set(seen[:before]) - set(rest)
                assert not missing, (f"resuming from bookmark {stored!r} lost "
                                     f"{len(missing)} row(s), e.g. {sorted(missing)[:3]}")
                if value is checkpoints[-1][0]:
                    assert len(rest) <= total, "resuming from the last bookmark re-read more"


def source_suite(source_class: type[Source], *, config: ConfigArg, stream: str,
                 expected_rows: Sequence[Mapping[str, Any]] | None = None,
                 bad_config: ConfigArg | None = None, failing_config: ConfigArg | None = None,
                 batch_rows: int | None = None, memory_config: ConfigArg | None = None,
                 memory_stream: str | None = None, memory_slack_bytes: int = 32 * 2**20,
                 secret_values: Iterable[str] = (), heavy_modules: Iterable[str] = (),
                 entry_module: str | None = None, server: bool | Callable[..., Any] = False,
                 xfail: Mapping[str, str] | None = None, skip: Iterable[str] = (),
                 name: str | None = None,
                 changes: Callable[[SuiteContext, int], int] | None = None,
                 changes_stream: str | None = None,
                 changes_config: ConfigArg | None = None) -> type:
    """Build the conformance test class of a source plugin.

    ``config`` reads ``stream``; ``expected_rows`` (optional) are compared with a full
    read on the columns they name, in any order; ``bad_config`` must fail validation;
    ``failing_config`` must validate but fail ``check()``; ``batch_rows`` is the small batch
    size the bounded-read checks use (default: a third of the stream); ``memory_config``/
    ``memory_stream`` name a larger stream for the memory check; ``secret_values`` adds
    values to the secret check beyond the schema's secret fields; ``heavy_modules`` extends
    :data:`HEAVY_MODULES`; ``entry_module`` overrides entry point discovery; ``xfail`` maps
    check names to a reason (strict xfail); ``skip`` disables checks.
    """
    attrs = {
        "plugin_class": source_class, "config": staticmethod(config)
        if callable(config) else config, "stream": stream, "expected_rows": expected_rows,
        "bad_config": _static(bad_config), "failing_config": _static(failing_config),
        "batch_rows": batch_rows, "memory_config": _static(memory_config),
        "memory_stream": memory_stream, "memory_slack_bytes": memory_slack_bytes,
        "secret_values": tuple(secret_values),
        "heavy_modules": (*HEAVY_MODULES, *heavy_modules), "entry_module": entry_module,
        "server": _static(server), "__module__": _caller_module(),
        "changes": _static(changes), "changes_stream": changes_stream,
        "changes_config": _static(changes_config),
    }
    return _build(_SourceSuite, name or f"Test{source_class.__name__}Conformance", attrs,
                  xfail or {}, skip)


