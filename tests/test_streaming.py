"""Streaming syncs (docs/realtime.md, conn.runtime.streaming): changes followed from a
source reach the destination through the consent gate, mapper and planner in
micro-batches; positions are saved after the rows they cover and acknowledged only
then; deletes and consent withdrawals delete in mirror mode."""

from __future__ import annotations

import threading
import time
from typing import Any

import pyarrow as pa
import pytest
from conn.destination import WriteResult
from conn.errors import ConfigError
from conn.source import Source, StreamInfo
from conn.streaming import OPERATION, ChangeBatch, StreamingSource
from conn.testing.memory import acknowledged
from conn.testing.sync import SyncHarness

from tests import fakes
from tests.cli.test_cli import run_cli
from tests.runtime.test_runtime import BASE_ROWS, PROJECT, people

SCHEMA = pa.schema([("id", pa.string()), ("email", pa.string()), ("name", pa.string()),
                    ("mkt", pa.string()), ("visits", pa.int64())])
MAPPING = {"id": "id", "email": "email", "name": "name"}


def person(i: int, name: str = "Ana", mkt: str = "yes", visits: int = 0) -> dict[str, Any]:
    return {"id": str(i), "email": f"p{i}@example.com", "name": name, "mkt": mkt,
            "visits": visits}


@pytest.fixture
def h(tmp_path):
    fakes.reset()
    with SyncHarness(tmp_path) as harness:
        harness.destination("crm", fakes.RecordingDestination, {})
        harness.stream("people", pa.Table.from_pylist([], schema=SCHEMA), primary_key="id")
        yield harness
    fakes.reset()


def sent() -> list[tuple[str, list[dict[str, Any]]]]:
    return [(op, recs) for _, op, recs in fakes.RECEIVED]


def eventually(check: Any, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def follow(h: SyncHarness, **settings: Any):
    spec = {"match_key": "email", "mapping": MAPPING, "max_latency_ms": 20, **settings}
    return h.follow("crm", "people", object="contacts", **spec)


def test_inserts_updates_and_deletes_reach_the_destination_in_mirror_mode(h):
    f = follow(h, mode="mirror")
    h.changes("people", [person(1), person(2)], ["insert", "insert"])
    assert f.wait_rows(2)
    h.changes("people", [person(1, "Ana B")], ["update"])
    assert f.wait_rows(3)
    end = h.changes("people", [{"id": "2"}], ["delete"])  # a delete carries the key only
    assert f.wait_rows(4)
    rep = f.stop()
    assert rep.status == "ok", rep.error
    assert sent() == [
        ("upsert", [{"id": "1", "email": "p1@example.com", "name": "Ana"},
                    {"id": "2", "email": "p2@example.com", "name": "Ana"}]),
        ("upsert", [{"id": "1", "email": "p1@example.com", "name": "Ana B"}]),
        ("delete", [{"email": "p2@example.com"}]),
    ]
    assert (rep.inserted, rep.updated, rep.deleted) == (2, 1, 1)
    assert acknowledged(h._dataset, "people") == end


def test_only_the_last_change_of_a_key_in_a_micro_batch_is_sent(h):
    f = follow(h, mode="mirror", max_latency_ms=300)
    h.changes("people", [person(1), person(1, "Bo"), person(2), person(3)],
              ["insert", "update", "insert", "insert"])
    h.changes("people", [{"id": "3"}], ["delete"])
    assert f.wait_rows(5)
    f.stop()
    assert sent() == [("upsert", [{"id": "1", "email": "p1@example.com", "name": "Bo"},
                                  {"id": "2", "email": "p2@example.com", "name": "Ana"}])]


def test_an_update_of_unmapped_columns_sends_nothing(h):
    f = follow(h)
    h.changes("people", [person(1)], ["insert"])
    assert f.wait_rows(1)
    h.changes("people", [person(1, visits=7)], ["update"])
    assert f.wait_rows(2)
    rep = f.stop()
    assert len(sent()) == 1
    assert (rep.inserted, rep.updated, rep.unchanged) == (1, 0, 1)


def test_consent_withdrawn_by_an_update_deletes_in_mirror_mode(h):
    h.destination("crm", fakes.RecordingDestination, {}, purposes=["marketing"])
    f = follow(h, mode="mirror", consent={"columns": {"marketing": "mkt"}})
    h.changes("people", [person(1), person(2, mkt="no")], ["insert", "insert"])
    assert f.wait_rows(2)
    h.changes("people", [person(1, mkt="no")], ["update"])
    assert f.wait_rows(3)
    rep = f.stop()
    assert sent() == [("upsert", [{"id": "1", "email": "p1@example.com", "name": "Ana"}]),
                      ("delete", [{"email": "p1@example.com"}])]
    assert rep.consent_denied == 2


def test_other_modes_send_no_deletes(h):
    f = follow(h, mode="upsert")
    h.changes("people", [person(1)], ["insert"])
    assert f.wait_rows(1)
    h.changes("people", [{"id": "1"}], ["delete"])
    assert f.wait_rows(2)
    rep = f.stop()
    assert [op for op, _ in sent()] == ["upsert"]
    assert rep.skipped == 1


def test_a_restart_resumes_after_the_saved_position(h):
    f = follow(h)
    h.changes("people", [person(1)], ["insert"])
    assert f.wait_rows(1)
    f.stop()
    h.changes("people", [person(2)], ["insert"])  # while nobody follows
    f = follow(h)
    h.changes("people", [person(3)], ["insert"])
    assert f.wait_rows(2)
    f.stop()
    ids = [r["id"] for _, recs in sent() for r in recs]
    assert ids == ["1", "2", "3"]


def test_nothing_is_acknowledged_before_the_destination_acknowledged(h):
    f = follow(h)
    h.changes("people", [person(1)], ["insert"])
    assert f.wait_rows(1)
    assert eventually(lambda: acknowledged(h._dataset, "people") == 1)
    first = acknowledged(h._dataset, "people")
    # The destination now leaves every row pending (down): the run stops, and neither
    # the state nor the source move past what was delivered.
    fakes.WRITE_HOOK.append(lambda req: WriteResult(pending=list(range(len(req)))))
    h.changes("people", [person(2)], ["insert"])
    deadline = time.monotonic() + 10
    while f._thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    rep = f.stop()
    assert rep.status == "failed"
    assert acknowledged(h._dataset, "people") == first == 1
    fakes.WRITE_HOOK.clear()
    f = follow(h)
    assert f.wait_rows(1)
    f.stop()
    assert [r["id"] for _, recs in sent() for r in recs] == ["1", "2"]


def test_a_micro_batch_waits_at_most_max_latency(h):
    f = follow(h, max_latency_ms=200, batch_rows=1000)
    t0 = time.monotonic()
    h.changes("people", [person(1)], ["insert"])
    assert f.wait_rows(1)
    waited = time.monotonic() - t0
    f.stop()
    assert 0.15 <= waited < 5  # the bound, plus a loaded machine's delays


def test_batch_rows_closes_a_micro_batch_before_the_time_bound(h):
    f = follow(h, max_latency_ms=60_000, batch_rows=3)
    h.changes("people", [person(i) for i in range(3)], ["insert"] * 3)
    assert f.wait_rows(3, timeout=5)
    f.stop()


class PlainSource(Source):
    """A source that can only be read whole."""

    name = "plain"

    def check(self) -> None:
        pass

    def discover(self) -> list[StreamInfo]:
        return [StreamInfo("people", SCHEMA, ("id",))]

    def read_batches(self, stream, state, batch_rows):
        yield from pa.Table.from_pylist([person(1)], schema=SCHEMA).to_batches()


def test_a_source_without_a_change_stream_is_refused(h):
    h.source("plain", PlainSource, {})
    f = h.follow("crm", "people", object="contacts", source="plain", match_key="email",
                 mapping=MAPPING)
    with pytest.raises(ConfigError, match="cannot be followed"):
        f.stop()


def test_max_latency_ms_is_validated(h):
    with pytest.raises(ConfigError, match=r"max_latency_ms"):
        follow(h, max_latency_ms=0)


# --- conn sync --follow ----------------------------------------------------------------------


@pytest.fixture
def proj_dir(tmp_path, registry, monkeypatch):
    """The CLI tests' project: the fakes' memory source (no change stream) to a recorder."""
    people(BASE_ROWS)
    (tmp_path / "conn.yml").write_text(PROJECT.replace("MODE", "upsert"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_follow_refuses_a_source_without_a_change_stream(proj_dir, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "sync", "mem", "crm", "--follow")
    assert code == 3
    assert "cannot be followed" in err and "without --follow" in err


def test_cli_follow_refuses_dry_run(proj_dir, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "sync", "mem", "crm", "--follow", "--dry-run")
    assert code == 3
    assert "--dry-run" in err


@pytest.mark.parametrize("bound", ["seconds", "changes"])
def test_a_long_follow_is_recorded_as_one_run_per_segment(h, monkeypatch, bound):
    """A segment ends after SEGMENT_SECONDS, or once SEGMENT_CHANGES changes were
    handed over (so a busy stream's memory stays bounded)."""
    from conn.runtime import streaming

    if bound == "seconds":
        monkeypatch.setattr(streaming, "SEGMENT_SECONDS", 0.3)
    else:
        monkeypatch.setattr(streaming, "SEGMENT_CHANGES", 1)
    f = follow(h)
    h.changes("people", [person(1)], ["insert"])
    assert f.wait_rows(1)
    if bound == "seconds":
        time.sleep(0.8)
    h.changes("people", [person(1, "Bo")], ["update"])
    assert f.wait_rows(2)
    rep = f.stop()
    assert rep.status == "ok"
    runs = h._store.runs("people_to_crm")
    assert len(runs) >= 2 and all(r["status"] == "ok" for r in runs)
    # Later segments plan against what earlier ones committed: an update, not an insert.
    assert [op for op, _ in sent()] == ["upsert", "upsert"] and rep.updated == 1


class _PeopleQueue(Source, StreamingSource):
    """A streaming source of the ``people`` stream that a batch read finds empty."""

    def check(self) -> None:
        return None

    def discover(self) -> list[StreamInfo]:
        return [StreamInfo("people", SCHEMA, ("id",))]

    def read_batches(self, stream, state, batch_rows):
        return iter(())


class QueueLike(_PeopleQueue):
    """A queue that delivers one good message and one it cannot read (position 1), and
    notes, when acknowledged, whether the rejection was already recorded."""

    name = "queue_like"
    harness: Any = None
    acked: list[tuple[Any, int]] = []  # (position, rejections recorded by then)

    def changes(self, stream, position, *, wait):
        row = {**person(1), OPERATION: "insert"}
        yield ChangeBatch(pa.RecordBatch.from_pylist([row]), 1,
                          rejected=(("people#2", "message is not valid JSON"),))
        while True:
            time.sleep(wait)
            yield ChangeBatch(None, 1)

    def acknowledge(self, position):
        recorded = len(QueueLike.harness._store.rejections("crm_people"))
        QueueLike.acked.append((position, recorded))


def test_a_message_the_source_could_not_read_is_recorded_before_it_is_acknowledged(h):
    QueueLike.acked = []
    QueueLike.harness = h
    h.source("queue", QueueLike, {})
    f = h.follow("crm", "people", object="contacts", source="queue", name="crm_people",
                 match_key="email", mapping=MAPPING, max_latency_ms=20)
    assert f.wait_rows(1)
    assert eventually(lambda: QueueLike.acked)
    rep = f.stop()
    assert rep.rejected == 1
    assert [r["id"] for _, recs in sent() for r in recs] == ["1"]
    assert QueueLike.acked[0] == (1, 1)  # acknowledged with the rejection already stored
    listed = h._store.rejections("crm_people")
    assert [(r["key"], r["reason"]) for r in listed] == [("people#2",
                                                          "message is not valid JSON")]


class Scripted(_PeopleQueue):
    """A source redelivering a fixed list of changes: ``script`` holds (change, operation,
    position, pause before it) tuples; a start after position P yields those after P,
    each pause sleeping first, so the changes reach conn grouped as the pauses decide."""

    name = "scripted"
    script: list[tuple[dict[str, Any], str, int, float]] = []

    def changes(self, stream, position, *, wait):
        at = position or 0
        for row, op, pos, pause in Scripted.script:
            if pos <= at:
                continue
            time.sleep(pause)
            at = pos
            yield ChangeBatch(pa.RecordBatch.from_pylist([{**row, OPERATION: op}],
                                                         schema=SCHEMA.append(
                                                             pa.field(OPERATION, pa.string()))),
                              pos)
        while True:
            time.sleep(wait)
            yield ChangeBatch(None, at)

    def acknowledge(self, position):
        return None


def test_a_change_re_sent_after_a_crash_keeps_its_key_however_it_is_regrouped(h):
    """The destination receives a micro-batch and never answers (as when the follower
    dies with its requests in flight); the next start gets the same changes in other
    groupings (the redelivered insert alone first, then its update): every record the
    destination sees again carries the key it first came with (docs/realtime.md)."""
    h.source("scripted", Scripted, {})
    keys: dict[str, set[str]] = {}

    def note(req: Any) -> WriteResult | None:
        for rec, key in zip(req.records.to_pylist(), req.idempotency_keys(), strict=True):
            keys.setdefault(repr(sorted(rec.items())), set()).add(key)
        return None

    def lost(req: Any) -> WriteResult:
        note(req)
        return WriteResult(pending=list(range(len(req))))  # received, never answered

    fakes.WRITE_HOOK.append(lost)
    Scripted.script = [(person(1), "insert", 1, 0.0), (person(2), "insert", 2, 0.0),
                       (person(1, "Bo"), "update", 3, 0.0)]
    f = h.follow("crm", "people", object="contacts", source="scripted", name="s",
                 match_key="email", mapping=MAPPING, max_latency_ms=100)
    deadline = time.monotonic() + 10
    while f._thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert f.stop().status == "failed"
    fakes.WRITE_HOOK[:] = [note]
    # Redelivered one change at a time, each alone past the time bound.
    Scripted.script = [(row, op, pos, 0.15) for row, op, pos, _ in Scripted.script]
    f = h.follow("crm", "people", object="contacts", source="scripted", name="s",
                 match_key="email", mapping=MAPPING, max_latency_ms=50)
    assert f.wait_rows(3)
    f.stop()
    assert len(keys) >= 2
    assert all(len(k) == 1 for k in keys.values()), keys


@pytest.fixture
def held_write(monkeypatch):
    """The destination's first write waits until ``release`` is set; ``planned`` counts
    the micro-batches planned (the runner's per-batch path called)."""
    from conn.runtime.runner import SyncRunner

    entered, release = threading.Event(), threading.Event()
    planned: list[int] = []
    plan = SyncRunner._plan_batch

    def counting(self, *args, **kw):
        planned.append(1)
        return plan(self, *args, **kw)

    def first_waits(req: Any) -> None:
        if not entered.is_set():
            entered.set()
            release.wait(30)

    monkeypatch.setattr(SyncRunner, "_plan_batch", counting)
    fakes.WRITE_HOOK.append(first_waits)
    yield entered, release, planned
    release.set()


def test_a_micro_batch_is_planned_while_the_one_before_is_delivered(h, held_write):
    entered, release, planned = held_write
    f = follow(h)
    h.changes("people", [person(1)], ["insert"])
    assert entered.wait(10)
    h.changes("people", [person(2)], ["insert"])
    # The second micro-batch's keys are not in the first: planned at once.
    assert eventually(lambda: len(planned) == 2, timeout=10)
    assert [op for op, _ in sent()] == []
    release.set()
    assert f.wait_rows(2)
    rep = f.stop()
    assert [r["id"] for _, recs in sent() for r in recs] == ["1", "2"]
    assert (rep.inserted, rep.updated) == (2, 0)


def test_a_key_still_in_flight_is_planned_once_its_answer_is_committed(h, held_write):
    entered, release, planned = held_write
    keys: list[str] = []
    fakes.WRITE_HOOK.append(lambda req: keys.extend(req.idempotency_keys()))
    f = follow(h)
    h.changes("people", [person(1)], ["insert"])
    assert entered.wait(10)
    h.changes("people", [person(1, "Bo")], ["update"])
    time.sleep(0.5)  # many times the time bound: it would have been planned by now
    assert len(planned) == 1
    release.set()
    assert f.wait_rows(2)
    rep = f.stop()
    # Planned against the insert's acknowledgement: an update, under a key of its own.
    assert (rep.inserted, rep.updated) == (1, 1)
    assert [recs for _, recs in sent()] == [[mapped(1, "Ana")], [mapped(1, "Bo")]]
    assert len(set(keys)) == 2


def mapped(i: int, name: str) -> dict[str, Any]:
    return {"id": str(i), "email": f"p{i}@example.com", "name": name}
