"""The planner against a plain Python model of what it must decide, on both paths (the
``planner_path`` fixture): states large enough that the compiled probe splits batches
into id ranges shared by two threads, over a cache with a change layer, batches with
duplicate keys (within a batch and across batches) and null keys, and keys touched
between batches (rows the mapping rejected: still in the source)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow as pa
from conn.state.backends.duckdb.store import DuckDBStateStore
from conn.state.planner import row_hashes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import examples
from tests.state.helpers import run_snapshot


def _model(state: dict[str, int], batches: list[list[tuple[str | None, int]]],
           touched: list[list[str]]) -> tuple[list[dict], list[str]]:
    """Per batch: inserts, updates, unchanged and rejections; then the deletions. After
    each batch, its ``touched`` keys count as seen: they are rows of this run (the
    mapper rejected them), so a later row of one of them is a repeat, and a key in the
    state is not deleted."""
    seen: set[str] = set()
    plans = []
    for rows, touch in zip(batches, touched, strict=True):
        plan: dict = {"inserts": [], "updates": [], "unchanged": 0, "rejected": []}
        for i, (key, value) in enumerate(rows):
            if key is None:
                plan["rejected"].append((i, "null"))
            elif key in seen:
                plan["rejected"].append((i, "duplicate"))
            elif key not in state:
                plan["inserts"].append(i)
            elif state[key] != value:
                plan["updates"].append(i)
            else:
                plan["unchanged"] += 1
            if key is not None:
                seen.add(key)
        plans.append(plan)
        seen.update(touch)
    return plans, sorted(set(state) - seen)


def _batch(rows: list[tuple[str | None, int]]) -> tuple[pa.Array, pa.RecordBatch]:
    return (pa.array([k for k, _ in rows], pa.string()),
            pa.record_batch({"v": pa.array([v for _, v in rows], pa.int64())}))


@st.composite
def scenario(draw: st.DrawFn) -> tuple[dict[str, int], dict[str, int], list, list]:
    n = draw(st.integers(1, 700))
    base = {f"k{i}": i % 5 for i in range(n)}
    changed = dict(base)  # a second run changes a few keys: the cache becomes layered
    for key in draw(st.lists(st.sampled_from(sorted(base)), max_size=20)):
        if draw(st.booleans()):
            changed.pop(key, None)
        else:
            changed[key] = 9
    changed.update({f"n{i}": 1 for i in range(draw(st.integers(0, 10)))})
    universe = [*changed, *(f"x{i}" for i in range(20))]
    row = st.tuples(st.none() | st.sampled_from(universe), st.integers(0, 9))
    batches = draw(st.lists(st.lists(row, max_size=80), min_size=1, max_size=4))
    touched = [draw(st.lists(st.sampled_from(universe), max_size=5)) for _ in batches]
    return base, changed, batches, touched


@settings(max_examples=examples(25), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=scenario())
def test_plans_and_deletions_match_the_model(tmp_path: Path, case) -> None:
    base, changed, batches, touched = case
    store = DuckDBStateStore(tmp_path / uuid.uuid4().hex)
    run_snapshot(store, base)
    run_snapshot(store, changed)
    # The state holds payload hashes; the model compares values: hash the model's too.
    with row_hashes.connect() as con:
        keys, b = _batch(list(changed.items()))
        state = dict(zip(keys.to_pylist(), row_hashes.payload_hashes(con, b).tolist(),
                         strict=True))
        hashed = []
        for rows in batches:
            _, hb = _batch(rows)
            h = row_hashes.payload_hashes(con, hb).tolist() if rows else []
            hashed.append([(k, h[i]) for i, (k, _) in enumerate(rows)])
    plans, deletions = _model(state, hashed, touched)
    with store.open_sync("s", uuid.uuid4().hex) as st_:
        for rows, touch, want in zip(batches, touched, plans, strict=True):
            got = st_.plan(*_batch(rows))
            assert got.inserts.to_pylist() == want["inserts"]
            assert got.updates.to_pylist() == want["updates"]
            assert got.unchanged == want["unchanged"]
            assert [(i, "null" if "null" in r else "duplicate") for i, r in got.rejected] \
                == want["rejected"]
            st_.touch(pa.array(touch, pa.string()))
        assert sorted(k for ks, _, _ in st_.deletions(50) for k in ks.to_pylist()) == deletions
