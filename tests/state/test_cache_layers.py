"""The sorted-state cache's change layers: a run that changes few keys writes a small
layer over the previous base instead of rewriting the cache, and the planner reads base
and layer as one state. Every plan must equal the plan made without any cache."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from conn.state.backends.duckdb import sorted_cache
from conn.state.backends.duckdb.sorted_cache import PARTS, SortedCache
from conn.state.backends.duckdb.store import DuckDBStateStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import examples
from tests.state.helpers import cache_files, run_snapshot


def _no_cache_runs(tmp: Path, snaps: list[dict[str, int]]) -> list[dict[str, list[str]]]:
    store = DuckDBStateStore(tmp / f"nocache-{uuid.uuid4().hex}")
    orig = SortedCache.read
    try:
        SortedCache.read = lambda self, *args: None  # type: ignore[method-assign]
        return [run_snapshot(store, s) for s in snaps]
    finally:
        SortedCache.read = orig  # type: ignore[method-assign]


def _layers(store: DuckDBStateStore) -> list[Path]:
    return [f for f in cache_files(store) if f.name.endswith(sorted_cache.MANIFEST)]


BASE = {f"k{i}": i for i in range(400)}


@st.composite
def small_changes(draw: st.DrawFn) -> list[dict[str, int]]:
    """A base snapshot, then runs that each update, delete or (re-)insert a few keys;
    keys deleted earlier come back, keys inserted earlier go again."""
    snaps = [dict(BASE)]
    universe = [*BASE, *(f"n{i}" for i in range(60))]
    for _ in range(draw(st.integers(1, 4))):
        cur = dict(snaps[-1])
        for key in draw(st.lists(st.sampled_from(universe), max_size=30)):
            action = draw(st.sampled_from(["update", "delete", "insert"]))
            if action == "delete":
                cur.pop(key, None)
            else:
                cur[key] = cur.get(key, 0) + draw(st.integers(1, 3))
        snaps.append(cur)
    return snaps


@settings(max_examples=examples(12), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(snaps=small_changes())
def test_layered_cache_plans_like_no_cache(tmp_path: Path, snaps: list[dict[str, int]]) -> None:
    store = DuckDBStateStore(tmp_path / uuid.uuid4().hex)
    got = []
    for s in snaps:
        got.append(run_snapshot(store, s))
        # Each change layer sits on the first run's base: at most one layer, one base.
        assert len(_layers(store)) <= 1
        assert len([f for f in cache_files(store) if f.name.endswith(".pairs.npy")]) == 1
    assert got == _no_cache_runs(tmp_path, snaps)


def test_a_small_change_writes_a_layer_and_a_big_one_rewrites(tmp_path: Path) -> None:
    store = DuckDBStateStore(tmp_path / "c")
    base = {f"k{i}": i for i in range(1000)}
    run_snapshot(store, base)
    first = {f.name for f in cache_files(store)}
    small = {**base, "k1": -1, "new": 5}
    small.pop("k2")
    assert run_snapshot(store, small) == {"inserts": ["new"], "updates": ["k1"], "deletes": ["k2"]}
    names = {f.name for f in cache_files(store)}
    assert first <= names and len(_layers(store)) == 1  # the base stayed, a layer came
    big = {k: v + 1 for k, v in small.items()}  # every key changed: rewrite whole
    run_snapshot(store, big)
    assert not _layers(store)
    assert not first & {f.name for f in cache_files(store)}
    assert len(cache_files(store)) == len(PARTS)
    assert run_snapshot(store, big) == {"inserts": [], "updates": [], "deletes": []}


@pytest.mark.parametrize("damage", ["manifest", "kids", "missing_base"])
def test_damaged_layer_falls_back_to_the_records(tmp_path: Path, damage: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    store = DuckDBStateStore(tmp_path / "c")
    base = {f"k{i}": i for i in range(1000)}
    snaps = [base, {**base, "k1": 7}, {**base, "k1": 7, "k3": 9}]
    run_snapshot(store, snaps[0])
    run_snapshot(store, snaps[1])
    files = cache_files(store)
    if damage == "manifest":
        next(f for f in files if f.name.endswith(sorted_cache.MANIFEST)).write_text("{")
    elif damage == "kids":
        next(f for f in files if "layer-upsert-kids" in f.name).write_bytes(b"junk")
    else:
        next(f for f in files if f.name.endswith(".pairs.npy")).unlink()
    assert run_snapshot(store, snaps[2]) == {"inserts": [], "updates": ["k3"], "deletes": []}
    if damage != "missing_base":
        assert "ignoring the sorted-state cache" in caplog.text
    assert run_snapshot(store, snaps[2]) == {"inserts": [], "updates": [], "deletes": []}


def test_a_layer_whose_base_is_gone_is_replaced(tmp_path: Path, used: list[bool]) -> None:
    """A run without changes keeps the cache as it is, unless the layer lost its base:
    then the whole cache is written again (not a fall-back at every later open)."""
    store = DuckDBStateStore(tmp_path / "c")
    base = {f"k{i}": i for i in range(1000)}
    run_snapshot(store, base)
    run_snapshot(store, {**base, "k1": 7})
    next(f for f in cache_files(store) if f.name.endswith(".pairs.npy")).unlink()
    run_snapshot(store, {**base, "k1": 7})  # no change: falls back, then rewrites the cache
    run_snapshot(store, {**base, "k1": 7})
    assert used[-2:] == [False, True]
    assert not _layers(store)


def test_merge_keeps_the_latest_change_per_key() -> None:
    u64 = np.uint64
    base = np.array([10, 20, 30, 40], u64)
    kids, hashes, gone = sorted_cache.merge_layer(
        base, np.array([20, 50], u64), np.array([2, 5], u64), np.array([30], u64),
        changed=np.array([50, 40, 60, 30], u64), changed_hashes=np.array([0, 0, 6, 3], u64),
        upserted=np.array([False, False, True, True]))
    assert kids.tolist() == [20, 30, 60]  # 50 deleted again; 30 back (shadows the base)
    assert hashes.tolist() == [2, 3, 6]
    assert gone.tolist() == [30, 40]  # 50 was never in the base
