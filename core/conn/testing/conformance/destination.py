"""The conformance suite of a destination plugin (see :mod:`conn.testing.conformance`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import pyarrow as pa

    from conn.destination import Destination, ObjectInfo, WriteResult
    from conn.testing.http import FaultServer

from conn.testing.conformance._common import (
    HEAVY_MODULES,
    UNICODE_SAMPLES,
    ConfigArg,
    SuiteContext,
    _assert_no_secrets,
    _build,
    _caller_module,
    _Common,
    _resolve,
    _secret_values,
    _static,
)

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

    def _write(self, dest: Destination, records: Any, operation: str | None = None
               ) -> WriteResult:
        """Write ``records`` with ``operation``; by default the object's first writing
        operation of upsert, insert and append (an append-only object, such as a
        message destination, is written with append)."""
        from conn.testing.harness import write_records

        if operation is None:
            ops = self._obj(dest).capabilities.operations()
            operation = next((op for op in ("upsert", "insert", "append") if op in ops),
                             "upsert")
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

            dest.write_batch = spy
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

    def test_events_acknowledged_and_resent_with_the_same_ids(self, ctx: SuiteContext
                                                              ) -> None:
        """When the object declares ``mode: events``: a write of events (operation
        ``event``) is acknowledged; sending the same events again carries the same ids
        (the requests' idempotency keys) and, against the fault server, the very same
        request bodies: no id or time is made up per attempt."""
        from conn.testing.harness import event_batch, make_request

        with self.make(ctx) as dest:
            obj = self._obj(dest)
            if "event" not in obj.capabilities.operations():
                pytest.skip(f"object {self.object!r} declares no events mode")
            key = self._key(obj)
            rows = event_batch(self._unique_keys(self._batch(), key, 2, "event"))
            sent: list[list[str]] = []
            bodies: list[list[bytes]] = []
            for attempt in ("first send", "second send"):
                seen = len(ctx.server.requests) if ctx.server is not None else 0
                req = make_request(dest, self.object, rows, "event",
                                   match_key=self.match_key)
                sent.append(req.idempotency_keys())
                self._assert_all_acknowledged(dest.write(req), f"events, {attempt}")
                if ctx.server is not None:
                    bodies.append([r.body for r in ctx.server.requests[seen:]])
            assert sent[0] == sent[1] and len(set(sent[0])) == len(sent[0]), \
                "the same events must carry the same, distinct ids"
            if ctx.server is not None:
                assert bodies[0] == bodies[1], "re-sent events differ from the first send"

    def _write_first(self, dest: Destination, obj: ObjectInfo, key: str, prefix: str
                     ) -> pa.RecordBatch | None:
        """Rows with fresh keys written with the first writing operation the object
        declares (``None`` when it declares none)."""
        ops = obj.capabilities.operations()
        for op in ("upsert", "insert", "append"):
            if op in ops:
                rows = self._unique_keys(self._batch(), key, 2, prefix)
                self._assert_all_acknowledged(self._write(dest, rows, op), op)
                return rows
        return None

    def test_erase_acknowledged_idempotent_and_unknown_keys(self, ctx: SuiteContext) -> None:
        """When the object declares ``erase`` (``Capabilities.erasure``): erasing records
        written before is acknowledged (and they are gone when readable); erasing the same
        records again is acknowledged too (an erasure is idempotent: a person already gone
        counts as erased); and keys the destination never held, in the same batch as known
        ones, neither fail nor reject the batch."""
        import pyarrow as pa

        with self.make(ctx) as dest:
            obj = self._obj(dest)
            if "erase" not in obj.capabilities.operations():
                pytest.skip(f"object {self.object!r} declares no erasure API")
            assert obj.capabilities.erasure.strip(), "erase declared without naming the API"
            key = self._key(obj)
            written = self._write_first(dest, obj, key, "erase")
            if written is None:
                pytest.fail("erase declared but nothing can be written first")
            unknown = self._unique_keys(self._batch(), key, 2, "never-written")
            both = pa.Table.from_batches([written, unknown.cast(written.schema)])
            batch = both.combine_chunks().to_batches()[0]
            self._assert_all_acknowledged(self._write(dest, batch, "erase"),
                                          "erase of written and unknown keys")
            back = self._keys_back(ctx, dest, key)
            if back is not None:
                gone = {self._stored(k) for k in written.column(key).to_pylist()}
                assert not gone & back, f"erased keys still present: {sorted(gone & back)[:3]}"
            self._assert_all_acknowledged(self._write(dest, written, "erase"),
                                          "second erase of the same records")
            self._assert_all_acknowledged(self._write(dest, unknown, "erase"),
                                          "erase of keys never written")

    def test_merge_acknowledged_and_absorbed_gone(self, ctx: SuiteContext) -> None:
        """When the object declares ``merge`` (``Capabilities.merges``): merging a record
        written before into another is acknowledged (and the absorbed one is gone when
        readable, the survivor kept); the same merge again, and the merge of a key the
        destination never held, are acknowledged too (the duplicate is not there: done).
        """
        from conn.testing.harness import merge_records

        with self.make(ctx) as dest:
            obj = self._obj(dest)
            if "merge" not in obj.capabilities.operations():
                pytest.skip(f"object {self.object!r} declares no merge API")
            assert obj.capabilities.merges.strip(), "merge declared without naming the API"
            key = self._key(obj)
            written = self._write_first(dest, obj, key, "merge")
            if written is None:
                pytest.fail("merge declared but nothing can be written first")
            absorbed, survivor = written.column(key).to_pylist()[:2]
            pair = ([absorbed], [survivor])
            self._assert_all_acknowledged(
                merge_records(dest, self.object, *pair, match_key=key), "merge")
            back = self._keys_back(ctx, dest, key)
            if back is not None:
                assert self._stored(absorbed) not in back, "the absorbed record stayed"
                assert self._stored(survivor) in back, "the survivor is gone"
            self._assert_all_acknowledged(
                merge_records(dest, self.object, *pair, match_key=key), "merge again")
            unknown = self._unique_keys(self._batch(), key, 1, "never-written")
            self._assert_all_acknowledged(
                merge_records(dest, self.object, unknown.column(key).to_pylist(), [survivor],
                              match_key=key), "merge of a key never written")

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

