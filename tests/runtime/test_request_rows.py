"""A request's records as dicts (``WriteRequest.to_pylist``) and its idempotency keys,
asked for by the chunks a destination's writers send, in any order, from several
threads: each chunk gets its own rows' values, as Arrow's ``to_pylist`` gives them
(``null: skip`` fields' nulls left out), in dicts of its own."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
from conn.pipeline import NULL_KEY, SKIP
from conn.testing.harness import make_request
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import fakes


def _batch(n: int, skip_plan: bool) -> pa.RecordBatch:
    plan = pa.field("plan", pa.string(), metadata={NULL_KEY: SKIP} if skip_plan else None)
    return pa.RecordBatch.from_arrays([
        pa.array([f"p{i}@example.com" for i in range(n)]),
        pa.array([None if i % 3 == 0 else f"plan{i % 5}" for i in range(n)]),
        pa.array([None if i % 7 == 0 else i * 1_000_003 for i in range(n)],
                 pa.int64()).cast(pa.timestamp("us", "UTC")),
    ], schema=pa.schema([pa.field("email", pa.string()), plan,
                         pa.field("at", pa.timestamp("us", "UTC"))]))


def _expected(batch: pa.RecordBatch) -> list[dict]:
    """The documented records: Arrow's own dicts, a ``null: skip`` field's nulls left out."""
    skip = {f.name for f in batch.schema if (f.metadata or {}).get(NULL_KEY) == SKIP}
    return [{k: v for k, v in r.items() if not (v is None and k in skip)}
            for r in batch.to_pylist()]


@st.composite
def plans(draw: st.DrawFn) -> tuple[int, bool, list[tuple[int, int, int]]]:
    """A request of ``n`` rows and the slices asked of it: (offset, length, nested cut)."""
    n = draw(st.integers(1, 6000))
    size = draw(st.sampled_from([1, 7, 100, 500, 2048, 2049, 5000]))
    asks = [(o, min(size, n - o), draw(st.integers(0, 3))) for o in range(0, n, size)]
    asks += draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 300),
                                    st.integers(0, 3)), max_size=4))
    order = draw(st.permutations(range(len(asks))))
    return n, draw(st.booleans()), [asks[i] for i in order]


@settings(max_examples=40, deadline=None)
@given(plans(), st.integers(1, 4))
def test_each_chunk_gets_its_rows_in_dicts_of_its_own(plan, threads: int) -> None:
    fakes.reset()
    n, skip_plan, asks = plan
    batch = _batch(n, skip_plan)
    dest = fakes.RecordingDestination({}, instance="crm")
    request = make_request(dest, "contacts", batch, match_key="email")
    keys = request.idempotency_keys()
    seen: list[dict] = []
    lock = threading.Lock()

    def ask(item: tuple[int, int, int]) -> None:
        offset, length, cut = item
        length = min(length, n - offset)
        chunk = request.slice(offset, length)
        if cut and length > 1:  # a slice of a slice (a split chunk)
            chunk = chunk.slice(cut % length, length - cut % length)
            offset, length = offset + cut % length, length - cut % length
        rows = chunk.to_pylist()
        assert rows == _expected(batch.slice(offset, length))
        assert chunk.idempotency_keys() == keys[offset:offset + length]
        with lock:
            seen.extend(rows)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(ask, asks))
    assert len({id(r) for r in seen}) == len(seen)  # no dict handed out twice


def test_a_changed_dict_does_not_change_another_ask(registry) -> None:
    dest = fakes.RecordingDestination({}, instance="crm")
    request = make_request(dest, "contacts", _batch(300, False), match_key="email")
    first = request.slice(100, 100).to_pylist()
    first[0]["email"] = "changed"
    again = request.slice(100, 100).to_pylist()
    assert again[0]["email"] == "p100@example.com"
    assert request.slice(0, 300).to_pylist()[100]["email"] == "p100@example.com"
