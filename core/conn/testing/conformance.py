"""Conformance suites for plugin authors: one call builds a whole pytest test class.

.. code-block:: python

    # tests/test_conformance.py of a source plugin
    from conn.testing.conformance import source_suite
    from my_plugin.source import MySource

    TestMySource = source_suite(
        MySource,
        config=lambda ctx: {"path": str(make_data(ctx.tmp_path))},
        stream="people",
        expected_rows=[{"id": 1, "email": "ana@example.com"}],
        bad_config={"path": 42},
    )

    # tests/test_conformance.py of an HTTP destination
    TestMyDestination = destination_suite(
        MyDestination,
        config=lambda ctx: {"base_url": ctx.server.url, "token": "s3cr3t-token"},
        object="contacts",
        sample_records=[{"id": "1", "email": "ana@example.com", "name": "Ana"}],
        rejected_record={"id": "bad", "email": "not-an-email"},
        server=lambda srv: srv.configure(reject=["bad"]),
    )

Assign the result to a module-level name starting with ``Test`` and pytest collects it.
``config`` is a mapping or a callable receiving a :class:`SuiteContext` (a fresh
``tmp_path`` per test and, with ``server=``, a running
:class:`~conn.testing.http.FaultServer`). A check that does not apply is skipped with the
reason; a check that fails because of a known plugin bug is marked with
``xfail={"test_name": "reason"}`` (strict: it fails once the bug is fixed).

Checks shared by both suites: the config schema is valid JSON Schema; a good config
validates; a bad config is rejected with a :class:`~conn.errors.ConfigError` naming the
path; ``check()`` passes (and fails with :class:`~conn.errors.CheckFailed` or
:class:`~conn.errors.ConfigError` for ``failing_config``); no secret value appears in
logs, errors or ``repr``; the plugin's entry point module imports nothing heavy
(:data:`HEAVY_MODULES` plus ``heavy_modules=``), measured in a fresh interpreter.

Source checks: discovery returns Arrow schemas and primary keys; reading returns the
expected rows; no batch exceeds ``batch_rows``; peak memory of a read (Python heap via
``tracemalloc`` plus Arrow's memory pool) stays within a bound set by the batch size;
bookmarks survive a JSON round trip and resuming from them loses no row.

Destination checks: objects are well formed; writes of an empty batch, the samples, a
batch larger than ``batch_size`` (split by the runtime, never over the limit), nulls,
unicode and long strings are acknowledged; the ``rejected_record`` is rejected with a
reason while its batch-mates are acknowledged; a write with ``failing_config`` (refused
credentials) leaves every row pending and rejects none; each declared mode works
(``delete`` for mirror); dry-run request descriptions hold no secret.
"""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conn import secrets
from conn.errors import CheckFailed, ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

    from conn.destination import Destination, ObjectInfo, WriteResult
    from conn.source import Source, StreamInfo
    from conn.testing.http import FaultServer

#: Top-level modules an entry point module must not import at load time. Extend per
#: plugin with ``heavy_modules=`` (e.g. your vendor SDK or database driver).
HEAVY_MODULES: tuple[str, ...] = (
    "pyarrow", "duckdb", "httpx", "numpy", "pandas", "polars", "requests", "sqlalchemy",
    "psycopg", "psycopg2", "adbc_driver_manager", "adbc_driver_postgresql", "boto3",
    "botocore", "google.cloud", "snowflake", "singer_sdk", "vcr", "orjson",
)

#: Strings the unicode check writes into every string field.
UNICODE_SAMPLES = ("Zoë Ünïcødé", "東京 🚀 emoji", "quote \" comma , newline \n tab \t",
                   "right-to-left עברית", "")

ConfigArg = Mapping[str, Any] | Callable[["SuiteContext"], Mapping[str, Any]]


@dataclass
class SuiteContext:
    """What a ``config`` callable receives: a fresh folder, the fault server when the
    suite was built with ``server=``, and the pytest ``request`` (use
    ``ctx.fixture("name")`` to reach the plugin's own fixtures, e.g. a database)."""

    tmp_path: Path
    server: FaultServer | None = None
    request: pytest.FixtureRequest | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def fixture(self, name: str) -> Any:
        """The value of the pytest fixture ``name`` (from the plugin's conftest)."""
        assert self.request is not None, "no pytest request in this context"
        return self.request.getfixturevalue(name)


# --- helpers shared by both suites ---------------------------------------------------------


def _resolve(value: Any, ctx: SuiteContext) -> Any:
    return value(ctx) if callable(value) else value


def _entry_module(cls: type, group: str, explicit: str | None) -> str | None:
    """The module named by the entry point that provides ``cls`` (by type name)."""
    if explicit:
        return explicit
    top = cls.__module__.split(".")[0]
    for ep in metadata.entry_points(group=group):
        if ep.name == getattr(cls, "name", None) and ep.value.split(".")[0].split(":")[0] == top:
            return ep.value.split(":")[0]
    return None


def imported_heavy_modules(module: str, heavy: Iterable[str] = HEAVY_MODULES,
                           python: str | None = None) -> list[str]:
    """Import ``module`` in a fresh interpreter and return the heavy modules it pulled in
    beyond what ``import conn`` itself loads (the plugin answers only for its own)."""
    code = (
        "import json, sys\n"
        "import conn\n"
        "before = set(sys.modules)\n"
        f"import {module}\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    proc = subprocess.run([python or sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"importing {module} failed:\n{proc.stderr[-2000:]}")
    loaded = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    return sorted(h for h in heavy if h in loaded or any(m.startswith(h + ".") for m in loaded))


def _secret_values(cls: type, config: Mapping[str, Any], extra: Iterable[str]) -> list[str]:
    found: list[str] = [s for s in extra if s]
    for path in secrets.secret_paths(getattr(cls, "config_schema", {}) or {}):
        node: Any = config
        for part in path:
            node = node.get(part) if isinstance(node, Mapping) else None
        if isinstance(node, str) and len(node) >= 4:
            found.append(node)
    return found


def _assert_no_secrets(texts: Iterable[str], values: Sequence[str], where: str) -> None:
    for text in texts:
        leaked = [v[:3] + "…" for v in values if v in text]
        assert not leaked, f"secret value(s) starting with {leaked} appear in {where}: " \
                           f"{secrets.MASK.join(text.split(leaked[0][:3]))[:300]!r}"


def _build(base: type, name: str, attrs: dict[str, Any], xfail: Mapping[str, str],
           skip: Iterable[str]) -> type:
    cls = type(name, (base,), attrs)
    known = {n for n in dir(base) if n.startswith("test_")}
    for test in [*xfail, *skip]:
        if test not in known:
            raise ValueError(f"unknown check {test!r} in xfail/skip; checks: {sorted(known)}")
    for test, reason in xfail.items():
        fn = getattr(base, test)

        @functools.wraps(fn)
        def wrapped(self: Any, *args: Any, _fn: Callable[..., Any] = fn, **kwargs: Any) -> None:
            _fn(self, *args, **kwargs)

        setattr(cls, test, pytest.mark.xfail(strict=True, reason=reason)(wrapped))
    for test in skip:
        fn = getattr(base, test)

        @functools.wraps(fn)
        def skipped(self: Any, *args: Any, _t: str = test, **kwargs: Any) -> None:
            pytest.skip(f"{_t} disabled by the plugin's suite (skip=)")

        setattr(cls, test, skipped)
    return cls


class _Common:
    """Checks every connector passes. Attributes are set by the suite builders."""

    plugin_class: type
    config: ConfigArg
    bad_config: ConfigArg | None = None
    failing_config: ConfigArg | None = None
    secret_values: tuple[str, ...] = ()
    heavy_modules: tuple[str, ...] = HEAVY_MODULES
    entry_module: str | None = None
    group: str = ""
    server: bool | Callable[[FaultServer], Any] = False

    @pytest.fixture
    def ctx(self, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
        """A :class:`SuiteContext` with a fresh folder (and the fault server)."""
        secrets.clear()
        if not self.server:
            yield SuiteContext(tmp_path, request=request)
            secrets.clear()
            return
        from conn.testing.http import FaultServer

        with FaultServer(seed=0) as srv:
            if callable(self.server):
                self.server(srv)
            yield SuiteContext(tmp_path, srv, request)
        secrets.clear()

    def make(self, ctx: SuiteContext, config: ConfigArg | None = None) -> Any:
        """Validate the config (as the runtime does) and build the connector."""
        cfg = dict(_resolve(self.config if config is None else config, ctx))
        self.plugin_class.validate_config(cfg)
        secrets.register_config_secrets(cfg, self.plugin_class.config_schema)
        return self.plugin_class.create(cfg, instance="conformance", project_dir=ctx.tmp_path)

    def test_config_schema_is_valid(self, ctx: SuiteContext) -> None:
        """``config_schema`` is a valid JSON Schema of an object; ``name`` is set."""
        import jsonschema

        cls = self.plugin_class
        assert cls.name, f"{cls.__name__}.name is empty: it is the 'type' in conn.yml"
        schema = cls.config_schema
        jsonschema.validators.validator_for(schema).check_schema(schema)
        assert schema.get("type") == "object", "config_schema must describe an object"

    def test_good_config_validates(self, ctx: SuiteContext) -> None:
        """The suite's ``config`` passes validation."""
        self.plugin_class.validate_config(dict(_resolve(self.config, ctx)))

    def test_bad_config_rejected_with_path(self, ctx: SuiteContext) -> None:
        """``bad_config`` raises a ConfigError whose message names the bad path."""
        if self.bad_config is None:
            pytest.skip("no bad_config given")
        with pytest.raises(ConfigError) as err:
            self.plugin_class.validate_config(dict(_resolve(self.bad_config, ctx)))
        errors = getattr(err.value, "errors", None) or [err.value]
        for e in errors:
            assert e.path, f"config error without a path: {e}"
            assert e.path in str(e), f"config error does not name its path: {e}"

    def test_check_passes(self, ctx: SuiteContext) -> None:
        """``check()`` succeeds with the good config."""
        with self.make(ctx) as conn:
            conn.check()

    def test_check_fails_clearly(self, ctx: SuiteContext) -> None:
        """``check()`` with ``failing_config`` raises CheckFailed (or ConfigError) with a
        reason, not a bare library exception."""
        if self.failing_config is None:
            pytest.skip("no failing_config given")
        with pytest.raises((CheckFailed, ConfigError)) as err, \
                self.make(ctx, self.failing_config) as conn:
            conn.check()
        assert str(err.value).strip(), "check() failed without a reason"

    def exercise(self, ctx: SuiteContext) -> None:
        """Run the connector's normal duties (the secret check watches them). Each suite
        below defines it for its kind of connector."""
        raise NotImplementedError(f"{type(self).__name__} must define exercise()")

    def test_no_secrets_in_logs_or_errors(self, ctx: SuiteContext,
                                          caplog: pytest.LogCaptureFixture) -> None:
        """Secret config values never appear in log records, exception messages or the
        connector's repr, including when ``check()`` fails."""
        cfg = dict(_resolve(self.config, ctx))
        values = _secret_values(self.plugin_class, cfg, self.secret_values)
        if self.failing_config is not None:
            values += _secret_values(self.plugin_class, dict(_resolve(self.failing_config,
                                                                      ctx)), ())
        if not values:
            pytest.skip("no secret fields in the config (mark them \"secret\": true)")
        texts: list[str] = []
        with caplog.at_level(logging.DEBUG):
            conn = self.make(ctx)
            texts.append(repr(conn))
            try:
                self.exercise(ctx)
            except Exception as exc:  # the exception text is what is checked
                texts.append(f"{exc!s} {exc!r}")
            if self.failing_config is not None:
                try:
                    with self.make(ctx, self.failing_config) as bad:
                        bad.check()
                except Exception as exc:
                    texts.append(f"{exc!s} {exc!r}")
                    cause = exc.__cause__
                    if cause is not None:
                        texts.append(str(cause))
            conn.close()
        texts += [r.getMessage() for r in caplog.records]
        _assert_no_secrets(texts, values, "logs, errors or repr")

    def test_entry_module_imports_nothing_heavy(self, ctx: SuiteContext) -> None:
        """Importing the plugin's entry point module (in a fresh interpreter) imports none
        of the heavy modules; import them inside the class module or the methods."""
        module = _entry_module(self.plugin_class, self.group, self.entry_module)
        if module is None:
            pytest.skip(f"no {self.group} entry point named {self.plugin_class.name!r} is "
                        f"installed (pass entry_module=)")
        heavy = imported_heavy_modules(module, self.heavy_modules)
        assert not heavy, (f"entry module {module} imports heavy module(s) {heavy} at load "
                           f"time; import them where the connector class is used")


# --- sources ---------------------------------------------------------------------------------


def _key_tuples(table: pa.Table, key: Sequence[str]) -> list[tuple[Any, ...]]:
    cols = [table.column(k).to_pylist() for k in key]
    return list(zip(*cols, strict=True)) if cols else []


def _norm_rows(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    return sorted(json.dumps(dict(r), sort_keys=True, default=str) for r in rows)


class _SourceSuite(_Common):
    """Source checks (see :func:`source_suite`)."""

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
                 name: str | None = None) -> type:
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
    }
    return _build(_SourceSuite, name or f"Test{source_class.__name__}Conformance", attrs,
                  xfail or {}, skip)


def _static(value: Any) -> Any:
    """Store callables as staticmethods so they are not bound to the test instance."""
    return staticmethod(value) if callable(value) else value


def _caller_module() -> str:
    frame = sys._getframe(2)
    return str(frame.f_globals.get("__name__", __name__))


# --- destinations ----------------------------------------------------------------------------


class _DestinationSuite(_Common):
    """Destination checks (see :func:`destination_suite`)."""

    group = "conn.destinations"
    object: str = ""
    sample_records: Sequence[Mapping[str, Any]] = ()
    rejected_record: Mapping[str, Any] | None = None
    match_key: str | None = None
    long_string_length: int = 10_000
    text_fields: tuple[str, ...] | None = None
    max_oversize_rows: int = 250_000
    key_as_stored: Callable[[Any], Any] | None = None
    read_back: Callable[[SuiteContext, Destination, str], Iterable[Mapping[str, Any]]] | None \
        = None

    # -- helpers --

    def _obj(self, dest: Destination) -> ObjectInfo:
        return dest.object(self.object)

    def _stored(self, value: Any) -> str:
        """A match key value as the destination stores it (``key_as_stored``)."""
        return str(value if self.key_as_stored is None else self.key_as_stored(value))

    def _key(self, obj: ObjectInfo) -> str:
        return self.match_key or obj.identifiers[0]

    def _batch(self, rows: Sequence[Mapping[str, Any]] | None = None) -> pa.RecordBatch:
        import pyarrow as pa

        rows = list(self.sample_records if rows is None else rows)
        return pa.RecordBatch.from_pylist(rows, schema=self._schema())

    def _schema(self) -> pa.Schema:
        import pyarrow as pa

        return pa.RecordBatch.from_pylist(list(self.sample_records)).schema

    def _write(self, dest: Destination, records: Any, operation: str = "upsert"
               ) -> WriteResult:
        from conn.testing.harness import write_records

        return write_records(dest, self.object, records, operation=operation,  # type: ignore[arg-type]
                             match_key=self.match_key)

    @staticmethod
    def _assert_all_acknowledged(result: WriteResult, what: str) -> None:
        assert result.error is None, f"{what}: the write failed: {result.error!r}"
        assert not result.pending, f"{what}: {len(result.pending)} row(s) left pending"
        assert not result.rejected, f"{what}: rejected {result.rejected[:3]}"

    def _keys_back(self, ctx: SuiteContext, dest: Destination, key: str) -> set[str] | None:
        rows = None
        if self.read_back is not None:
            rows = list(self.read_back(ctx, dest, self.object))
        elif ctx.server is not None:
            return {str(k) for k in ctx.server.store}
        return None if rows is None else {str(r.get(key)) for r in rows}

    def _unique_keys(self, batch: pa.RecordBatch, key: str, n: int, prefix: str
                     ) -> pa.RecordBatch:
        """``n`` rows cycling through the samples, with unique match keys (e-mail
        addresses when the samples' keys are)."""
        import pyarrow as pa

        idx = pa.array([i % batch.num_rows for i in range(n)], pa.int64())
        table = pa.Table.from_batches([batch]).take(idx)
        typ = table.schema.field(key).type
        if pa.types.is_integer(typ):
            keys = pa.array(range(10**6, 10**6 + n), typ)
        elif any("@" in str(v) for v in batch.column(key).to_pylist()):  # e-mail keys
            keys = pa.array([f"{prefix}-{i}@example.com" for i in range(n)]).cast(typ)
        else:
            keys = pa.array([f"{prefix}-{i}" for i in range(n)]).cast(typ)
        table = table.set_column(table.schema.get_field_index(key), key, keys)
        return table.combine_chunks().to_batches()[0]

    def exercise(self, ctx: SuiteContext) -> None:
        with self.make(ctx) as dest:
            dest.check()
            dest.objects()
            self._write(dest, self._batch())

    # -- checks --

    def test_objects_well_formed(self, ctx: SuiteContext) -> None:
        """Objects have valid field schemas, identifiers among their fields, a positive
        batch size and consistent modes; the suite's object exists."""
        import jsonschema

        from conn.destination import MODES, object_schema_errors

        with self.make(ctx) as dest:
            objs = dest.objects()
            assert objs, "objects() returned nothing"
            for obj in objs:
                problems = list(object_schema_errors(obj))
                assert not problems, "; ".join(problems)
                jsonschema.validators.validator_for(obj.fields).check_schema(obj.fields)
                assert obj.identifiers, f"object {obj.name!r} has no identifier"
                unknown = set(obj.capabilities.modes) - set(MODES)
                assert not unknown, f"object {obj.name!r}: unknown modes {sorted(unknown)}"
                if "mirror" in obj.capabilities.modes:
                    assert obj.capabilities.supports_delete, (
                        f"object {obj.name!r} declares mirror mode without delete support")
            obj = self._obj(dest)
            key = self._key(obj)
            assert key in self._schema().names, f"sample records lack the match key {key!r}"

    def test_write_empty_batch(self, ctx: SuiteContext) -> None:
        """An empty batch is acknowledged without error."""
        with self.make(ctx) as dest:
            res = self._write(dest, self._batch([]))
        self._assert_all_acknowledged(res, "empty batch")

    def test_write_samples(self, ctx: SuiteContext) -> None:
        """The sample records are acknowledged (and found again when readable)."""
        with self.make(ctx) as dest:
            res = self._write(dest, self._batch())
            self._assert_all_acknowledged(res, "sample records")
            key = self._key(self._obj(dest))
            back = self._keys_back(ctx, dest, key)
        if back is not None:
            want = {self._stored(r[key]) for r in self.sample_records}
            assert want <= back, f"written keys missing afterwards: {sorted(want - back)[:5]}"

    def test_write_more_than_batch_size(self, ctx: SuiteContext) -> None:
        """A batch over ``capabilities.batch_size`` is split by the runtime: each
        ``write_batch`` call gets at most ``batch_size`` rows, and every row is
        acknowledged."""
        with self.make(ctx) as dest:
            obj = self._obj(dest)
            size = obj.capabilities.batch_size
            if size + 1 > self.max_oversize_rows:
                pytest.skip(f"batch_size {size} is above max_oversize_rows")
            key = self._key(obj)
            big = self._unique_keys(self._batch(), key, size + 1, "big")
            calls: list[int] = []
            inner = dest.write_batch

            def spy(request: Any) -> Any:
                calls.append(len(request))
                return inner(request)

            dest.write_batch = spy  # type: ignore[method-assign]
            res = self._write(dest, big)
            self._assert_all_acknowledged(res, f"{size + 1} rows")
            back = self._keys_back(ctx, dest, key)
        assert max(calls) <= size and len(calls) >= 2, f"write_batch calls: {calls}"
        if back is not None:
            want = {self._stored(k) for k in big.column(key).to_pylist()}
            assert want <= back, f"{len(want - back)} row(s) missing afterwards"

    def _non_key_fields(self, obj: ObjectInfo) -> list[str]:
        return [n for n in self._schema().names
                if n not in obj.identifiers and n != self._key(obj) and n not in obj.required]

    def test_write_nulls(self, ctx: SuiteContext) -> None:
        """Records whose optional fields are all null are acknowledged."""
        import pyarrow as pa

        with self.make(ctx) as dest:
            obj = self._obj(dest)
            batch = self._unique_keys(self._batch(), self._key(obj), 2, "null")
            for name in self._non_key_fields(obj):
                i = batch.schema.get_field_index(name)
                batch = batch.set_column(i, name, pa.nulls(batch.num_rows,
                                                           batch.schema.field(i).type))
            res = self._write(dest, batch)
        self._assert_all_acknowledged(res, "null fields")

    def _string_fields(self, obj: ObjectInfo) -> list[str]:
        import pyarrow as pa

        if self.text_fields is not None:
            return list(self.text_fields)
        schema = self._schema()
        return [n for n in self._non_key_fields(obj)
                if pa.types.is_string(schema.field(n).type)
                and "format" not in (obj.properties.get(n) or {})]

    def test_write_unicode_and_long_strings(self, ctx: SuiteContext) -> None:
        """Unicode (accents, CJK, emoji, quotes, newlines, RTL, empty) and long strings
        (``long_string_length`` characters) in free-text fields are acknowledged."""
        import pyarrow as pa

        with self.make(ctx) as dest:
            obj = self._obj(dest)
            fields = self._string_fields(obj)
            if not fields:
                pytest.skip("the sample records have no optional free-text string field")
            texts = [*UNICODE_SAMPLES, "ł" * self.long_string_length]
            batch = self._unique_keys(self._batch(), self._key(obj), len(texts), "uni")
            for name in fields:
                batch = batch.set_column(batch.schema.get_field_index(name), name,
                                         pa.array(texts, pa.string()))
            res = self._write(dest, batch)
            self._assert_all_acknowledged(res, "unicode and long strings")
            if self.read_back is not None:
                key = self._key(obj)
                rows = {str(r.get(key)): r for r in self.read_back(ctx, dest, self.object)}
                for row in batch.to_pylist():
                    got = rows.get(self._stored(row[key]))
                    assert got is not None, f"row {row[key]!r} missing afterwards"
                    for name in fields:
                        assert got.get(name) == row[name], f"{name!r} changed on the way"

    def test_rejection_reported_with_reason(self, ctx: SuiteContext) -> None:
        """``rejected_record`` written among the samples is rejected with a reason, at its
        own index; the other records are acknowledged."""
        if self.rejected_record is None:
            pytest.skip("no rejected_record given")
        rows = [*self.sample_records, self.rejected_record]
        with self.make(ctx) as dest:
            res = self._write(dest, self._batch(rows))
        bad = len(rows) - 1
        assert res.error is None and not res.pending, f"write failed: {res.error!r}"
        assert [r.index for r in res.rejected] == [bad], \
            f"expected only row {bad} rejected, got {res.rejected}"
        assert res.rejected[0].reason.strip(), "rejection without a reason"

    def test_refused_credentials_leave_rows_pending(self, ctx: SuiteContext) -> None:
        """A write with ``failing_config`` (credentials refused, a target that is not
        there) stops the run: every row stays pending with the error, none is rejected
        (a rejected row is not sent again until it changes, so a wrong token must raise,
        not reject)."""
        if self.failing_config is None:
            pytest.skip("no failing_config given")
        with self.make(ctx, self.failing_config) as dest:
            try:
                dest.object(self.object)
            except Exception:  # the run stops before it sends anything: all rows pending
                return
            res = self._write(dest, self._batch())
        n = len(self.sample_records)
        assert not res.rejected, (
            f"with failing_config, rows were rejected ({res.rejected[:2]}): refused "
            f"credentials must raise in write_batch (rows stay pending), not reject rows")
        assert sorted(res.pending) == list(range(n)), f"{n - len(res.pending)} row(s) " \
            "acknowledged although the credentials were refused"
        assert res.error is not None and str(res.error).strip(), "no error explains it"

    def test_declared_modes_supported(self, ctx: SuiteContext) -> None:
        """Every declared mode works: its operation is accepted and acknowledged, and
        ``mirror`` deletes (the deleted keys are gone when readable)."""
        with self.make(ctx) as dest:
            obj = self._obj(dest)
            ops = obj.capabilities.operations()
            key = self._key(obj)
            written = None
            if "upsert" in ops:
                written = self._unique_keys(self._batch(), key, 2, "mode-upsert")
                self._assert_all_acknowledged(self._write(dest, written), "upsert")
            for op in ("insert", "append"):
                if op in ops:
                    fresh = self._unique_keys(self._batch(), key, 2, f"mode-{op}")
                    self._assert_all_acknowledged(self._write(dest, fresh, op), op)
                    written = written if written is not None else fresh
            if "update" in ops and written is not None:
                self._assert_all_acknowledged(self._write(dest, written, "update"), "update")
            if "mirror" in obj.capabilities.modes:
                assert "delete" in ops, "mirror declared without delete"
            if "delete" in ops:
                if written is None:
                    pytest.fail("delete declared but nothing can be written first")
                self._assert_all_acknowledged(self._write(dest, written, "delete"), "delete")
                back = self._keys_back(ctx, dest, key)
                if back is not None:
                    gone = {self._stored(k) for k in written.column(key).to_pylist()}
                    assert not gone & back, f"deleted keys still present: {sorted(gone & back)[:3]}"

    def test_dry_run_descriptions_hold_no_secret(self, ctx: SuiteContext) -> None:
        """``describe_requests`` (``--dry-run``) returns JSON-serialisable requests without
        secret values."""
        from conn.testing.harness import make_request

        cfg = dict(_resolve(self.config, ctx))
        values = _secret_values(self.plugin_class, cfg, self.secret_values)
        with self.make(ctx) as dest:
            req = make_request(dest, self.object, self._batch(), dry_run=True,
                               match_key=self.match_key)
            described = dest.describe_requests(req)
        text = json.dumps(described, default=str)
        _assert_no_secrets([text], values, "describe_requests()")


def destination_suite(destination_class: type[Destination], *, config: ConfigArg, object: str,
                      sample_records: Sequence[Mapping[str, Any]],
                      rejected_record: Mapping[str, Any] | None = None,
                      match_key: str | None = None, bad_config: ConfigArg | None = None,
                      failing_config: ConfigArg | None = None,
                      server: bool | Callable[[FaultServer], Any] = False,
                      read_back: Callable[..., Iterable[Mapping[str, Any]]] | None = None,
                      long_string_length: int = 10_000,
                      text_fields: Iterable[str] | None = None,
                      max_oversize_rows: int = 250_000,
                      key_as_stored: Callable[[Any], Any] | None = None,
                      secret_values: Iterable[str] = (), heavy_modules: Iterable[str] = (),
                      entry_module: str | None = None, xfail: Mapping[str, str] | None = None,
                      skip: Iterable[str] = (), name: str | None = None) -> type:
    """Build the conformance test class of a destination plugin.

    ``config`` (a mapping, or a callable of :class:`SuiteContext`) writes ``object``;
    ``sample_records`` are valid records for it (at least one, all fields typed: give a
    value to every field, the nulls check nulls them itself); ``rejected_record`` is one
    the destination must refuse; ``server=True`` (or a callable configuring it) runs a
    :class:`~conn.testing.http.FaultServer` per test, exposed as ``ctx.server``, whose
    ``store`` then serves to read written keys back; ``read_back(ctx, dest, object)``
    returns the records stored, for destinations without a server (files, databases);
    ``long_string_length`` sizes the long-string check, written into ``text_fields`` (default:
    the optional string fields without a ``format``); ``max_oversize_rows`` skips the
    oversize check for huge batch sizes; ``key_as_stored(value)`` maps a written match key
    to what ``read_back``/the server holds (e.g. its SHA-256). The remaining arguments are as in
    :func:`source_suite`.
    """
    if not sample_records:
        raise ValueError("destination_suite needs at least one sample record")
    attrs = {
        "plugin_class": destination_class, "config": _static(config), "object": object,
        "sample_records": tuple(sample_records), "rejected_record": rejected_record,
        "match_key": match_key, "bad_config": _static(bad_config),
        "failing_config": _static(failing_config), "server": _static(server),
        "read_back": _static(read_back), "long_string_length": long_string_length,
        "text_fields": None if text_fields is None else tuple(text_fields),
        "max_oversize_rows": max_oversize_rows, "key_as_stored": _static(key_as_stored),
        "secret_values": tuple(secret_values),
        "heavy_modules": (*HEAVY_MODULES, *heavy_modules), "entry_module": entry_module,
        "__module__": _caller_module(),
    }
    return _build(_DestinationSuite, name or f"Test{destination_class.__name__}Conformance",
                  attrs, xfail or {}, skip)


__all__ = [
    "HEAVY_MODULES",
    "SuiteContext",
    "destination_suite",
    "imported_heavy_modules",
    "source_suite",
]
