"""The pipeline end to end with in-process plugins: diffing, modes, rejections, failures,
dry runs, and the seal that keeps ungated rows out of destinations."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from conn.config import load_project
from conn.destination import WriteRequest, WriteResult
from conn.pipeline import UngatedWrite
from conn.runtime.runner import RunOptions, run_syncs

from tests import fakes

PROJECT = """\
version: 1
sources:
  mem: {type: memory}
destinations:
  crm:
    type: recorder
    purposes: [marketing]
    config: {reject: ["bad@example.com"], batch_size: 2}
syncs:
  people_to_crm:
    source: mem
    stream: people
    destination: crm
    object: contacts
    primary_key: id
    match_key: email
    mode: MODE
    consent: {columns: {marketing: opt_in}}
    mapping:
      email: email
      name: name
"""


def people(rows: list[tuple[int, str, str, bool]]) -> None:
    fakes.TABLES["people"] = (pa.table({
        "id": pa.array([r[0] for r in rows], pa.int64()),
        "email": [r[1] for r in rows],
        "name": [r[2] for r in rows],
        "opt_in": [r[3] for r in rows],
    }), ("id",))


@pytest.fixture
def project(tmp_path: Path, registry):
    def make(mode: str = "upsert", text: str = PROJECT):
        (tmp_path / "conn.yml").write_text(text.replace("MODE", mode))
        return load_project(tmp_path / "conn.yml", registry=registry)
    return make


def sync(project, registry, **opts):
    report = run_syncs(project, list(project.syncs.values()), registry, RunOptions(**opts))
    return report.syncs[0]


def received(op: str | None = None) -> list[dict]:
    return [r for _, o, rows in fakes.RECEIVED if op in (None, o) for r in rows]


BASE_ROWS = [(1, "a@example.com", "Ann", True), (2, "b@example.com", "Ben", True),
             (3, "c@example.com", "Cy", False), (4, "d@example.com", "Di", True)]


def test_first_run_sends_consented_rows_then_nothing(project, registry):
    people(BASE_ROWS)
    p = project()
    rep = sync(p, registry)
    assert (rep.status, rep.rows_read, rep.consent_denied, rep.inserted) == ("ok", 4, 1, 3)
    assert sorted(r["email"] for r in received()) == ["a@example.com", "b@example.com",
                                                      "d@example.com"]
    fakes.RECEIVED.clear()
    rep = sync(p, registry)
    assert (rep.inserted, rep.updated, rep.unchanged) == (0, 0, 3)
    assert received() == []


def test_changed_row_sent_once(project, registry):
    people(BASE_ROWS)
    p = project()
    sync(p, registry)
    fakes.RECEIVED.clear()
    people([(1, "a@example.com", "Annie", True), *BASE_ROWS[1:]])
    rep = sync(p, registry)
    assert (rep.updated, rep.unchanged) == (1, 2)
    assert received() == [{"email": "a@example.com", "name": "Annie"}]
    fakes.RECEIVED.clear()
    assert sync(p, registry).updated == 0


@pytest.mark.parametrize("mode,expect_delete", [("mirror", True), ("upsert", False)])
def test_deleted_row_and_withdrawn_consent(project, registry, mode, expect_delete):
    people(BASE_ROWS)
    p = project(mode)
    sync(p, registry)
    fakes.RECEIVED.clear()
    # Row 2 leaves the source; row 4 withdraws consent.
    people([BASE_ROWS[0], BASE_ROWS[2], (4, "d@example.com", "Di", False)])
    rep = sync(p, registry)
    deleted = sorted(r["email"] for r in received("delete"))
    if expect_delete:
        assert deleted == ["b@example.com", "d@example.com"]
        assert rep.deleted == 2
    else:
        assert deleted == [] and rep.deleted == 0


def test_rejection_is_stored_and_retried_next_run(project, registry, tmp_path):
    people([*BASE_ROWS, (5, "bad@example.com", "Bad", True)])
    p = project()
    rep = sync(p, registry)
    assert rep.status == "rejected" and rep.rejected == 1 and rep.inserted == 3
    assert "INVALID_EMAIL" in next(iter(rep.rejection_reasons))
    from conn.runtime.runner import open_state_store

    store = open_state_store(p, registry)
    try:
        rejections = store.rejections("people_to_crm")
    finally:
        store.close()
    assert [r["key"] for r in rejections] == ["5"]
    assert "INVALID_EMAIL" in rejections[0]["reason"]
    fakes.RECEIVED.clear()
    rep = sync(p, registry)  # source unchanged: the rejected row is tried again
    assert rep.rejected == 1 and rep.unchanged == 3


def test_duplicate_keys_rejected_before_sending(project, registry):
    people([*BASE_ROWS, (1, "dup@example.com", "Dup", True)])
    rep = sync(project(), registry)
    assert rep.rejected >= 1
    assert "dup@example.com" not in [r["email"] for r in received()]
    assert any("duplicate" in r.lower() for r in rep.rejection_reasons)


def test_mapping_change_resends_affected_rows(project, registry):
    people(BASE_ROWS)
    p = project()
    sync(p, registry)
    fakes.RECEIVED.clear()
    p2 = project(text=PROJECT.replace("      name: name\n", ""))
    rep = sync(p2, registry)
    assert rep.updated == 3
    assert received()[0] == {"email": "a@example.com"}


def test_destination_failure_leaves_rows_pending_and_resumes(project, registry):
    people(BASE_ROWS)
    p = project()
    calls = {"n": 0}

    def fail_second(req: WriteRequest) -> WriteResult | None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("destination went away")
        return None

    fakes.WRITE_HOOK.append(fail_second)
    rep = sync(p, registry)
    assert rep.status == "failed" and rep.pending >= 1 and "went away" in rep.error
    first = received()
    fakes.WRITE_HOOK.clear()
    fakes.RECEIVED.clear()
    rep = sync(p, registry)
    again = received()
    assert rep.status == "ok"
    # Nothing acknowledged is sent twice; everything arrives.
    assert not {r["email"] for r in first} & {r["email"] for r in again}
    assert len(first) + len(again) == 3


def test_dry_run_sends_and_stores_nothing(project, registry):
    people(BASE_ROWS)
    p = project()
    rep = sync(p, registry, dry_run=True, preview_rows=2)
    assert rep.status == "dry_run" and rep.inserted == 3
    assert received() == []
    assert len(rep.preview) >= 1
    assert sync(p, registry).inserted == 3


def test_destination_refuses_a_request_not_built_by_the_runtime(registry):
    dest = registry.destination_class("recorder")({})
    obj = dest.object("contacts")
    forged = WriteRequest("s", obj, "upsert", pa.RecordBatch.from_pylist(
        [{"email": "x@example.com"}]), "email")
    with pytest.raises(UngatedWrite):
        dest.write(forged)
    assert received() == []


def test_unsupported_mode_is_a_config_error(project, registry, tmp_path):
    people(BASE_ROWS)
    text = PROJECT.replace("batch_size: 2}", "batch_size: 2, modes: [upsert]}")
    from conn.errors import ConfigError

    with pytest.raises(ConfigError, match="mode 'mirror' is not supported"):
        sync(project("mirror", text), registry)


def test_null_skip_fields_are_left_out_of_payloads(project, registry):
    """Regression: WriteRequest.to_pylist() sent nulls of ``null: skip`` fields."""
    people([(1, "a@example.com", None, True), (2, "b@example.com", "Ben", True)])
    text = PROJECT.replace("      name: name\n", "      name: {from: name, null: skip}\n")
    sync(project(text=text), registry)
    by_email = {r["email"]: r for r in received()}
    assert by_email["a@example.com"] == {"email": "a@example.com"}
    assert by_email["b@example.com"] == {"email": "b@example.com", "name": "Ben"}


def test_incremental_source_reads_only_new_rows_but_mirror_reads_everything(project,
                                                                            registry):
    """Regression: with a cursor, mirror mode read only rows past the bookmark and so
    deleted every unchanged record from the destination."""
    people(BASE_ROWS)
    fakes.CURSORS["people"] = "id"
    for mode, expect_read in (("upsert", 0), ("mirror", 4)):
        fakes.RECEIVED.clear()
        p = project(mode)
        sync(p, registry)
        rep = sync(p, registry)
        assert rep.rows_read == expect_read
        assert rep.deleted == 0 and received("delete") == []


def test_null_primary_key_rejected_every_run_without_churn(project, registry):
    fakes.TABLES["people"] = (pa.table({
        "id": pa.array([1, None, 3], pa.int64()),
        "email": ["a@example.com", "n@example.com", "c@example.com"],
        "name": ["A", "N", "C"], "opt_in": [True, True, True]}), ("id",))
    p = project("mirror")
    rep = sync(p, registry)
    assert (rep.rejected, rep.inserted) == (1, 2)
    assert any("null primary key" in r for r in rep.rejection_reasons)
    rep = sync(p, registry)
    assert (rep.rejected, rep.unchanged, rep.deleted) == (1, 2, 0)
    assert "n@example.com" not in [r["email"] for r in received()]


# --- the delivery lane: batch N+1 is prepared while batch N is written ------------------

MANY_ROWS = [(i, f"p{i}@example.com", f"P{i}", True) for i in range(1, 9)]


def test_next_batch_is_read_while_the_previous_one_is_written(project, registry,
                                                              monkeypatch):
    people(MANY_ROWS)
    p = project()
    yielded: list[int] = []
    read = fakes.MemorySource.read_batches

    def counting(self, stream, state, batch_rows):
        for item in read(self, stream, state, batch_rows):
            yielded.append(1)
            yield item

    monkeypatch.setattr(fakes.MemorySource, "read_batches", counting)
    overlapped: list[bool] = []

    def first_write_waits_for_the_next_read(req: WriteRequest) -> None:
        if not overlapped:
            deadline = time.monotonic() + 5
            while len(yielded) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            overlapped.append(len(yielded) >= 2)
        return None

    fakes.WRITE_HOOK.append(first_write_waits_for_the_next_read)
    rep = sync(p, registry, batch_rows=2)
    assert rep.status == "ok" and rep.inserted == 8
    assert overlapped == [True]


def test_nothing_is_written_after_a_failed_batch_and_the_rest_follows_next_run(
        project, registry):
    people(MANY_ROWS)
    p = project()
    writes: list[list[str]] = []

    def fail_second(req: WriteRequest) -> WriteResult | None:
        writes.append([r["email"] for r in req.to_pylist()])
        return WriteResult.all_pending(req.num_rows) if len(writes) == 2 else None

    fakes.WRITE_HOOK.append(fail_second)
    rep = sync(p, registry, batch_rows=2)
    # Batches 3 and 4 were read and planned while batch 2 was written; none is sent.
    assert rep.status == "failed" and rep.inserted == 2 and rep.pending == 2
    assert len(writes) == 2
    first = received()
    fakes.WRITE_HOOK.clear()
    fakes.RECEIVED.clear()
    rep = sync(p, registry, batch_rows=2)
    assert rep.status == "ok" and rep.inserted == 6
    again = received()
    assert not {r["email"] for r in first} & {r["email"] for r in again}
    assert len(first) + len(again) == 8


def test_bookmark_is_not_saved_past_a_failed_batch(project, registry):
    people(MANY_ROWS)
    fakes.CURSORS["people"] = "id"
    p = project()
    calls = {"n": 0}

    def fail_third(req: WriteRequest) -> WriteResult | None:
        calls["n"] += 1
        return WriteResult.all_pending(req.num_rows) if calls["n"] == 3 else None

    fakes.WRITE_HOOK.append(fail_third)
    assert sync(p, registry, batch_rows=2).status == "failed"
    fakes.WRITE_HOOK.clear()
    rep = sync(p, registry, batch_rows=2)
    # The bookmark (yielded after the last batch) was never stored: everything is read
    # again and only the unacknowledged rows are sent.
    assert rep.status == "ok" and rep.rows_read == 8
    assert rep.inserted == 4 and rep.unchanged == 4


def test_every_write_of_a_run_happens_on_one_thread(project, registry):
    people(MANY_ROWS)
    p = project("mirror")
    sync(p, registry, batch_rows=2)
    people(MANY_ROWS[:3])
    threads: set[int] = set()

    def record_thread(req: WriteRequest) -> None:
        threads.add(threading.get_ident())
        return None

    fakes.WRITE_HOOK.append(record_thread)
    rep = sync(p, registry, batch_rows=2)
    assert rep.status == "ok" and rep.deleted == 5
    assert len(threads) == 1 and threading.get_ident() not in threads


def test_a_projecting_source_reads_only_the_columns_the_sync_uses(project, registry,
                                                                 monkeypatch):
    """Key, consent column and the mapping's columns: a column nothing reads is not read,
    the consent column that no field maps still is (and still gates)."""
    people(BASE_ROWS)
    t, pk = fakes.TABLES["people"]
    fakes.TABLES["people"] = (t.append_column("notes", pa.array(["x"] * t.num_rows)), pk)
    rep = sync(project(), registry)
    assert (rep.status, rep.consent_denied, rep.inserted) == ("ok", 1, 3)
    assert fakes.READ_COLUMNS == [["id", "email", "name", "opt_in"]]
    assert all(set(r) <= {"email", "name"} for r in received())
    # A source that does not project is given the whole stream.
    fakes.READ_COLUMNS.clear()
    monkeypatch.setattr(fakes.MemorySource, "projection", False)
    rep = sync(project(), registry, full_resync=True)
    assert fakes.READ_COLUMNS == [["id", "email", "name", "opt_in", "notes"]]
    assert rep.status == "ok"


def test_narrowed_stream_keeps_order_key_and_cursor():
    from conn.source import StreamInfo

    schema = pa.schema([("a", pa.int64()), ("id", pa.int64()), ("b", pa.string()),
                        ("at", pa.int64()), ("c", pa.string())])
    s = StreamInfo("t", schema, ("id",), "at", {"b": "email"})
    n = s.narrowed({"c", "a", "missing"})
    assert n.schema.names == ["a", "id", "at", "c"]
    assert (n.name, n.primary_key, n.cursor, n.personal) == ("t", ("id",), "at", {"b": "email"})
    assert s.schema.names == ["a", "id", "b", "at", "c"]  # the original is unchanged


def test_runner_reads_and_closes_a_source_instance_it_is_handed(project, registry):
    """``SyncRunner(..., sources={name: source})`` reads that instance instead of building
    the source from conn.yml, and closes it at the end of the run like its own."""
    from conn.runtime.report import RunInfo
    from conn.runtime.runner import SyncRunner
    from conn.state.backends.memory import MemoryStateStore

    class Handed(fakes.MemorySource):
        closed = False

        def read_batches(self, stream, state, batch_rows):
            for item in super().read_batches(stream, state, batch_rows):
                yield item.slice(0, 2) if isinstance(item, pa.RecordBatch) else item

        def close(self) -> None:
            Handed.closed = True

    people(BASE_ROWS)
    p = project()
    sync_cfg = p.syncs["people_to_crm"]
    rep = SyncRunner(p, sync_cfg, registry, MemoryStateStore(),
                     RunInfo.new(p.dir, [sync_cfg.name]),
                     sources={"mem": Handed({}, instance="mem")}).run()
    assert (rep.status, rep.rows_read, rep.inserted) == ("ok", 2, 2)
    assert sorted(r["email"] for r in received()) == ["a@example.com", "b@example.com"]
    assert Handed.closed
