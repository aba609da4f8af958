"""conn.testing.sync.SyncHarness: whole syncs in a test, state kept between them."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from conn.errors import ConfigError
from conn.testing.memory import MemorySource, MemoryStream, add_dataset, drop_dataset
from conn.testing.sync import SyncHarness

from tests import fakes

MAPPING = {"email": "email", "name": "name"}
ROWS = [{"id": 1, "email": "a@example.com", "name": "Ann", "opt_in": True},
        {"id": 2, "email": "b@example.com", "name": "Ben", "opt_in": True},
        {"id": 3, "email": "c@example.com", "name": "Cy", "opt_in": False}]


@pytest.fixture
def harness(tmp_path: Path):
    fakes.reset()
    with SyncHarness(tmp_path) as h:
        h.destination("crm", fakes.RecordingDestination, {"reject": ["bad@example.com"]})
        yield h
    fakes.reset()


def sent(op: str) -> list[str]:
    return sorted(r["email"] for _, o, rows in fakes.RECEIVED if o == op for r in rows)


def test_a_second_sync_sends_only_changes_and_mirror_deletes(harness: SyncHarness) -> None:
    harness.stream("people", ROWS, primary_key="id")
    first = harness.sync("crm", "people", object="contacts", match_key="email",
                         mode="mirror", mapping=MAPPING)
    assert (first.status, first.rows_read, first.inserted) == ("ok", 3, 3)
    harness.stream("people", [ROWS[0], {**ROWS[1], "name": "Benjamin"}], primary_key="id")
    second = harness.sync("crm", "people", object="contacts", match_key="email",
                          mode="mirror", mapping=MAPPING)
    assert (second.unchanged, second.updated, second.deleted) == (1, 1, 1)
    assert sent("delete") == ["c@example.com"]
    assert [r.syncs[0].status for r in harness.runs] == ["ok", "ok"]


def test_consent_and_rejections_as_in_conn_sync(tmp_path: Path) -> None:
    fakes.reset()
    with SyncHarness(tmp_path) as h:
        h.destination("crm", fakes.RecordingDestination, {"reject": ["b@example.com"]},
                      purposes=["marketing"])
        h.stream("people", ROWS, primary_key="id")
        rep = h.sync("crm", "people", object="contacts", match_key="email",
                     consent={"columns": {"marketing": "opt_in"}}, mapping=MAPPING)
    assert (rep.status, rep.consent_denied, rep.inserted, rep.rejected) == \
        ("rejected", 1, 1, 1)
    assert sent("upsert") == ["a@example.com"]
    fakes.reset()


def test_the_project_is_validated_as_the_cli_validates_it(harness: SyncHarness) -> None:
    harness.stream("people", ROWS, primary_key="id")
    with pytest.raises(ConfigError, match="mode"):
        harness.sync("crm", "people", object="contacts", match_key="email", mode="sideways",
                     mapping=MAPPING)
    assert (harness.folder / "conn.yml").read_text().startswith("version: 1")


def test_incremental_streams_resume_after_their_bookmark(harness: SyncHarness) -> None:
    rows = [{**r, "seq": i} for i, r in enumerate(ROWS)]
    harness.stream("people", rows[:2], primary_key="id", cursor="seq")
    assert harness.sync("crm", "people", object="contacts", match_key="email",
                        mapping=MAPPING).rows_read == 2
    harness.stream("people", rows, primary_key="id", cursor="seq")
    again = harness.sync("crm", "people", object="contacts", match_key="email",
                         mapping=MAPPING)
    assert (again.rows_read, again.inserted) == (1, 1)


def test_the_memory_source_alone() -> None:
    table = pa.table({"id": [1, 2, 3], "ts": pa.array([10, 20, 30], pa.int64())})
    dataset = add_dataset({"t": MemoryStream(table, ("id",), "ts")})
    src = MemorySource({"dataset": dataset}, instance="m")
    src.check()
    (info,) = src.discover()
    assert (info.name, info.primary_key, info.cursor) == ("t", ("id",), "ts")
    from conn.testing.harness import read_all

    got, states = read_all(src, "t", state=10, batch_rows=1)
    assert got.column("id").to_pylist() == [2, 3] and states == [30]
    drop_dataset(dataset)
    from conn.errors import CheckFailed

    with pytest.raises(CheckFailed, match="no dataset"):
        src.check()
