"""The plugin authors' harness: requests built as the runtime builds them."""

from __future__ import annotations

import pyarrow as pa
import pytest
from conn.destination import WriteRequest, WriteResult
from conn.pipeline import verify
from conn.testing.harness import make_request, write_records
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import fakes

ROWS = [{"id": "1", "email": "ana@example.com", "name": "Ana"},
        {"id": "2", "email": "bo@example.com", "name": None}]


@pytest.fixture
def dest():
    fakes.reset()
    with fakes.RecordingDestination({}, instance="crm") as d:
        yield d
    fakes.reset()


def test_a_made_request_passes_the_runtime_seal_and_reaches_write_batch(dest) -> None:
    req = make_request(dest, "contacts", ROWS)
    verify(req)  # raises for a request the runtime did not build
    assert isinstance(req, WriteRequest)
    assert (req.operation, req.match_key, req.dry_run, len(req)) == ("upsert", "email",
                                                                     False, 2)
    assert req.to_pylist() == ROWS
    assert dest.write(req) == WriteResult()
    assert fakes.RECEIVED == [("crm", "upsert", ROWS)]


def test_a_made_request_has_idempotency_keys_stable_per_record_and_change(dest) -> None:
    first = make_request(dest, "contacts", ROWS).idempotency_keys()
    assert len(first) == 2 and len(set(first)) == 2
    assert make_request(dest, "contacts", ROWS).idempotency_keys() == first
    changed = [{**ROWS[0], "name": "Ana B."}, ROWS[1]]
    again = make_request(dest, "contacts", changed).idempotency_keys()
    assert again[0] != first[0] and again[1] == first[1]
    # the same record acknowledged before (a previous hash) is a new delivery
    later = make_request(dest, "contacts", ROWS, previous=[7, None]).idempotency_keys()
    assert later[0] != first[0] and later[1] == first[1]
    assert make_request(dest, "contacts", ROWS, keys=["a", "b"]).idempotency_keys() != first
    assert len(make_request(dest, "contacts", ROWS).idempotency_key()) == 32


def test_a_delete_carries_only_the_match_key(dest) -> None:
    req = make_request(dest, "contacts", ROWS, "delete", dry_run=True, match_key="id")
    assert req.records.schema.names == ["id"] and req.dry_run
    assert len(req.idempotency_keys()) == 2
    assert write_records(dest, "contacts", pa.RecordBatch.from_pylist(ROWS),
                         operation="delete").rejected == []
    assert fakes.RECEIVED[-1] == ("crm", "delete", [{"email": r["email"]} for r in ROWS])


def test_keys_must_match_the_records(dest) -> None:
    with pytest.raises(ValueError, match="1 keys for 2 records"):
        make_request(dest, "contacts", ROWS, keys=["only-one"])


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 60), st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)),
                                    min_size=1, max_size=12))
def test_slices_asked_at_once_have_the_keys_of_their_records(n, cuts) -> None:
    """Idempotency keys are computed once per request and shared by its slices (the
    chunks a destination's writers send at once): each slice, and each slice of a
    slice, still gets exactly the keys its own records have."""
    from concurrent.futures import ThreadPoolExecutor

    with fakes.RecordingDestination({}, instance="crm") as d:
        rows = [{"id": str(i), "email": f"p{i}@example.com", "name": f"n{i}"}
                for i in range(n)]
        whole = make_request(d, "contacts", rows).idempotency_keys()
        req = make_request(d, "contacts", rows)
        parts = [req.slice(a, b).slice(b % 3, a + 1) for a, b in cuts]
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda r: r.idempotency_keys(), parts))
        for (a, b), keys in zip(cuts, got, strict=True):
            start = min(a, n)
            inner = whole[start:start + b][b % 3:b % 3 + a + 1]
            assert keys == inner
