"""The engine's encoding: dense codes equal to the distinct keys in sorted order, for
keys in order and keys at random, signed and unsigned; identifiers get one code per
distinct string, their type, and the junk given; a hash collision is detected; old
profile ids are ranked in their string order, whatever their form (docs/profiles.md,
"Stitching", "Stable ids")."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from conn.profiles.encoding import checked_codes, encode_idents, encode_ints
from conn.profiles.engine import _Index
from conn.profiles.ids import hex_ids, ranked
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import examples

words = st.integers(0, 2**64 - 1)


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(words, max_size=400), st.sampled_from(["random", "few", "high", "sorted"]),
       st.booleans())
def test_codes_are_the_sorted_distinct_keys(values, shape, signed):
    if shape == "few":  # many duplicates: every key shares its high bits with others
        values = [v % 7 for v in values]
    elif shape == "high":  # distinct keys with equal high bits
        values = [(v >> 40) << 40 | (v % 3) for v in values]
    elif shape == "sorted":  # runs: the other sorting path
        values = sorted(values)
    keys = np.array(values, np.uint64)
    if signed:
        keys = keys.view(np.int64)
    codes, first = encode_ints(keys)
    distinct, inverse = np.unique(keys, return_inverse=True)
    assert np.array_equal(codes, inverse.ravel())
    assert np.array_equal(keys[first], distinct)


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["email", "phone", "other"]),
                          st.text("ab@.", max_size=4)), min_size=1, max_size=60),
       st.lists(st.text("ab@.", max_size=4), max_size=3))
def test_identifiers_get_one_code_per_string(pairs, junk):
    strings = [f"{t}\x1f{v}" for t, v in pairs]
    junk_ids = [f"email\x1f{v}" for v in junk]
    ids = encode_idents(pa.array(strings), ("email", "phone"), pa.array(junk_ids,
                                                                          pa.string()))
    codes = ids.codes.tolist()
    assert ids.values().to_pylist() == [strings[int(i)] for i in ids.first]
    for i, s in enumerate(strings):
        assert strings[int(ids.first[codes[i]])] == s  # the code's string is this one
    assert len(set(codes)) == len(set(strings))
    assert ids.typ.tolist() == [{"email": 0, "phone": 1}.get(t, 2) for t, _ in pairs]
    assert ids.dropped.tolist() == [s in junk_ids for s in strings]


def test_a_collision_of_the_first_hash_is_detected():
    h = np.array([5, 9, 5, 9], np.uint64)
    assert checked_codes(h, np.array([1, 2, 1, 2], np.uint64)) is not None
    # Strings 0 and 2 share the first hash but not the second: two different strings.
    assert checked_codes(h, np.array([1, 2, 3, 2], np.uint64)) is None


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(words, min_size=1, max_size=50), st.lists(st.text("p_0af", max_size=19),
                                                           max_size=3))
def test_old_ids_ranked_in_string_order(numbers, others):
    # conn's own ids (read as numbers) and, mixed in, any other strings (sorted as text).
    names = hex_ids(np.array(numbers, np.uint64)).to_pylist() + others
    for case in (names[:len(numbers)], names):
        distinct, at = ranked(pa.array(case, pa.string()), np.arange(len(case)))
        assert distinct.to_pylist() == sorted(set(case))
        assert [distinct.to_pylist()[int(i)] for i in at] == case


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(words, min_size=1, max_size=60), st.lists(st.text("p_0af", max_size=19),
                                                           max_size=2),
       st.data())
def test_old_ids_ranked_at_positions_of_chunks(numbers, others, data):
    # The stored ids come in chunks; a build ranks those of some records only (many or
    # few of them: read in place or picked first), in any order, repeats allowed.
    names = hex_ids(np.array(numbers, np.uint64)).to_pylist() + others
    cut = data.draw(st.integers(0, len(names)))
    chunked = pa.chunked_array([names[:cut], names[cut:]], pa.string())
    at = data.draw(st.lists(st.integers(0, len(names) - 1), max_size=2 * len(names)))
    picked = [names[i] for i in at]
    distinct, codes = ranked(chunked, np.array(at, np.int64))
    assert distinct.to_pylist() == sorted(set(picked))
    assert [distinct.to_pylist()[int(i)] for i in codes] == picked


@settings(max_examples=examples(150), deadline=None)
@given(st.sets(words, max_size=200), st.lists(words, max_size=200), st.booleans(),
       st.booleans())
def test_index_finds_each_key_or_minus_one(table, others, ordered, hashed):
    table = list(table)
    keys = table[: len(table) // 2] + others
    keys = sorted(keys) if ordered else keys
    index = _Index(np.array(table, np.uint64))
    index.HASHED = 0 if hashed else 1 << 30  # both lookups, whatever the size
    got = index.find(np.array(keys, np.uint64)).tolist()
    assert got == [table.index(k) if k in table else -1 for k in keys]
