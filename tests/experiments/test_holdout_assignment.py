"""Holdout assignment (docs/experiments.md): the same keys are held out whatever the run,
process, row order or batching; the share held out is the requested percent within
binomial bounds; each key's arm matches the documented hash, computed here with hashlib."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pytest
from conn.experiments.holdout import held_out
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tests.experiments.reference import is_held_out

keys_st = st.lists(st.text(min_size=0, max_size=12), min_size=0, max_size=60, unique=True)
percent_st = st.sampled_from((0.5, 1, 5, 10, 12.5, 33.3, 50, 90, 99.9))
salt_st = st.text(min_size=1, max_size=10)


@settings(max_examples=80, deadline=None)
@given(keys_st, percent_st, salt_st)
def test_each_key_is_assigned_as_documented(keys, percent, salt):
    got = held_out(pa.array(keys, pa.string()), percent, salt).to_pylist()
    assert got == [is_held_out(k, percent, salt) for k in keys]


@settings(max_examples=60, deadline=None)
@given(keys_st, percent_st, salt_st, st.randoms(use_true_random=False),
       st.integers(1, 20))
def test_assignment_ignores_row_order_and_batching(keys, percent, salt, rnd, size):
    first = dict(zip(keys, held_out(pa.array(keys, pa.string()), percent, salt).to_pylist(),
                     strict=True))
    shuffled = list(keys)
    rnd.shuffle(shuffled)
    again: dict[str, bool] = {}
    for start in range(0, len(shuffled), size):  # another run, other batches
        part = shuffled[start:start + size]
        again.update(zip(part, held_out(pa.array(part), percent, salt).to_pylist(),
                         strict=True))
    assert again == first


@settings(max_examples=40, deadline=None)
@given(keys_st, salt_st, percent_st, percent_st)
def test_a_larger_share_holds_out_a_superset(keys, salt, a, b):
    low, high = sorted((a, b))
    arr = pa.array(keys, pa.string())
    small, large = held_out(arr, low, salt).to_pylist(), held_out(arr, high, salt).to_pylist()
    assert all(lg for sm, lg in zip(small, large, strict=True) if sm)


@settings(max_examples=15, deadline=None)
@given(percent_st, salt_st, st.sampled_from(("int", "email", "uuid")))
def test_held_out_share_is_within_binomial_bounds(percent, salt, kind):
    n = 20_000
    keys = {"int": [str(i) for i in range(n)],
            "email": [f"user{i}@example.com" for i in range(n)],
            "uuid": [f"{i:08x}-0000-4000-8000-{i * 7919:012x}" for i in range(n)]}[kind]
    count = held_out(pa.array(keys), percent, salt).true_count
    # A two-sided band that a fair split leaves with probability 1e-6 (15 examples x
    # 1e-6: this test does not flake).
    lo, hi = stats.binom.interval(1 - 1e-6, n, percent / 100)
    assert lo <= count <= hi, (percent, salt, kind, count, (lo, hi))


def test_nulls_are_never_held_out_and_bounds_are_exact():
    keys = pa.array(["a", None, "b"])
    assert held_out(keys, 99.9, "s").to_pylist()[1] is False
    assert held_out(keys, 0, "s").to_pylist() == [False] * 3
    assert held_out(keys, 100, "s").to_pylist() == [True, False, True]
    with pytest.raises(ValueError):
        held_out(keys, 101, "s")


@pytest.mark.slow
def test_assignment_is_the_same_in_another_process_and_hash_seed():
    keys = [f"k{i}" for i in range(2000)]
    code = ("import json, sys, pyarrow as pa; from conn.experiments.holdout import held_out; "
            "keys = json.load(sys.stdin); "
            "print(json.dumps(held_out(pa.array(keys), 10, 'salt').to_pylist()))")
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", code], input=json.dumps(keys),
                              capture_output=True, text=True, env=env, timeout=120, check=True)
        outs.append(json.loads(done.stdout))
    assert outs[0] == outs[1] == held_out(pa.array(keys), 10, "salt").to_pylist()
