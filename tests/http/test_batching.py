"""Split on whole-batch rejection, re-chunking, and one request per record."""

from __future__ import annotations

from collections import Counter

import pytest
from conn.destination import WriteResult
from conn.errors import RetryLater
from conn.http import BatchRejected, chunked, write_each, write_in_chunks, write_with_split
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import examples


class FakeApi:
    """Rejects a whole payload (HTTP 400) if it holds any bad record."""

    def __init__(self, bad: set[int]) -> None:
        self.bad = bad
        self.accepted: Counter[int] = Counter()
        self.calls = 0

    def send(self, records):
        self.calls += 1
        bad = [r for r in records if r in self.bad]
        if bad:
            raise BatchRejected(f"invalid email in record {bad[0]}")
        self.accepted.update(records)


@settings(max_examples=examples(200), deadline=None)
@given(st.integers(1, 300).flatmap(
    lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)))))
def test_split_rejects_exactly_the_bad_records(case) -> None:
    n, bad = case
    api = FakeApi(bad)
    res = write_with_split(list(range(n)), api.send)
    assert sorted(r.index for r in res.rejected) == sorted(bad)
    assert res.pending == []
    # every good record was sent in an accepted call exactly once
    assert set(api.accepted) == set(range(n)) - bad
    assert all(c == 1 for c in api.accepted.values())
    # each rejection carries the vendor's message about that record
    assert all(r.reason == f"invalid email in record {r.index}" for r in res.rejected)
    assert not any(r.retryable for r in res.rejected)


def test_split_cost_is_logarithmic_for_one_bad_record() -> None:
    api = FakeApi({37})
    write_with_split(list(range(100)), api.send)
    assert api.calls <= 2 * 7 + 1


def test_per_record_outcomes_need_no_split() -> None:
    res = write_with_split(["a", "b", "c"], lambda recs: [None, "bad b", None],
                           retryable=True)
    assert [(r.index, r.reason, r.retryable) for r in res.rejected] == [(1, "bad b", True)]
    res = write_with_split(["a", "b", "c"], lambda recs: {2: "nope"})
    assert [r.index for r in res.rejected] == [2]


def test_transient_error_midway_leaves_only_that_part_pending() -> None:
    calls = []

    def send(recs):
        calls.append(list(recs))
        if len(calls) == 1:
            raise BatchRejected("bad batch")
        if 3 in recs:
            raise RetryLater("throttled")

    res = write_with_split([0, 1, 2, 3], send)
    assert res.pending == [2, 3] and isinstance(res.error, RetryLater)
    assert res.rejected == []


def test_bad_outcome_shape_is_an_error() -> None:
    res = write_with_split([1, 2], lambda recs: [None])
    assert res.pending == [0, 1] and isinstance(res.error, ValueError)


def test_chunked_and_write_in_chunks() -> None:
    assert [(o, list(c)) for o, c in chunked(list(range(5)), 2)] == [
        (0, [0, 1]), (2, [2, 3]), (4, [4])]
    seen = []

    def write(chunk):
        seen.append(list(chunk))
        return write_with_split(chunk, lambda recs: {i: "odd" for i, r in enumerate(recs)
                                                     if r % 2})

    res = write_in_chunks(list(range(7)), 3, write)
    assert seen == [[0, 1, 2], [3, 4, 5], [6]]
    assert [r.index for r in res.rejected] == [1, 3, 5]


def test_write_in_chunks_stops_after_an_exception() -> None:
    def write(chunk):
        if chunk[0] == 2:
            raise RetryLater("daily budget")
        return WriteResult()

    res = write_in_chunks(list(range(6)), 2, write)
    assert res.pending == [2, 3, 4, 5] and isinstance(res.error, RetryLater)


@pytest.mark.parametrize("min_size", [1, 4])
def test_min_size_stops_splitting(min_size: int) -> None:
    api = FakeApi({0})
    res = write_with_split(list(range(8)), api.send, min_size=min_size)
    assert len(res.rejected) == min_size


# --- one request per record --------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 4])
def test_write_each_acknowledges_rejects_and_stops_at_the_first_failure(workers: int) -> None:
    import threading

    from conn import secrets

    secrets.register("tok-secret-123")
    calls: list[int] = []
    lock = threading.Lock()

    def call(rec: int) -> str | None:
        with lock:
            calls.append(rec)
        if rec % 10 == 3:
            return f"record {rec} refused (token tok-secret-123)"
        return None

    res = write_each(list(range(40)), call, workers=workers)
    assert not res.pending and res.error is None and sorted(calls) == list(range(40))
    assert [r.index for r in res.rejected] == [3, 13, 23, 33]
    assert all(not r.retryable and "tok-secret-123" not in r.reason for r in res.rejected)
    assert write_each([1, 3], call, retryable=True).rejected[0].retryable

    calls.clear()

    def down_after_five(rec: int) -> str | None:
        with lock:
            calls.append(rec)
        if rec >= 5:
            raise RetryLater("the API answers 503")
        return None

    res = write_each(list(range(40)), down_after_five, workers=workers)
    assert isinstance(res.error, RetryLater) and not res.rejected
    # every record not acknowledged is pending; after the failure no new call starts
    assert set(res.pending) == set(range(40)) - {r for r in calls if r < 5}
    assert len(calls) <= 5 + workers
    assert write_each([], call) == WriteResult()
