"""The kernels against DuckDB itself (row hashes), hashlib (SHA-256) and plain Python
references (probe, index)."""

from __future__ import annotations

import hashlib

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from conn_speedups import (
    classify,
    hash_binary,
    hash_fixed,
    index_add,
    mix_constant,
    probe,
    sha256_hex,
    split,
)
from hypothesis import given, settings
from hypothesis import strategies as st

CON = duckdb.connect()

FIXED = {
    "b": (pa.int8(), st.integers(-128, 127)),
    "h": (pa.int16(), st.integers(-(2**15), 2**15 - 1)),
    "i": (pa.int32(), st.integers(-(2**31), 2**31 - 1)),
    "q": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "B": (pa.uint8(), st.integers(0, 255)),
    "H": (pa.uint16(), st.integers(0, 2**16 - 1)),
    "I": (pa.uint32(), st.integers(0, 2**32 - 1)),
    "Q": (pa.uint64(), st.integers(0, 2**64 - 1)),
    "f": (pa.float32(), st.floats(width=32)),
    "d": (pa.float64(), st.floats()),
    "?": (pa.bool_(), st.booleans()),
}


def duckdb_hash(*cols: pa.Array) -> np.ndarray:
    t = pa.table({f"c{i}": c for i, c in enumerate(cols)})  # noqa: F841 - read by DuckDB
    args = ", ".join(f"c{i}" for i in range(len(cols)))
    return CON.sql(f"SELECT hash({args}) FROM t").to_arrow_table().column(0).to_numpy()


def hash_column(col: pa.Array, out: np.ndarray, mix: bool) -> None:
    bufs = col.buffers()
    validity = bufs[0] if col.null_count else None
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        hash_binary(out, mix, len(col), col.offset, validity, bufs[1], bufs[2],
                    pa.types.is_large_string(col.type))
    else:
        kind = next(k for k, (t, _) in FIXED.items() if t == col.type)
        hash_fixed(out, mix, len(col), col.offset, validity, bufs[1], kind)


def sliced(values: list, typ: pa.DataType, start: int) -> pa.Array:
    """An array with an offset into its buffers (as a slice of a batch would have)."""
    return pa.array([None] * start + values, typ).slice(start)


@pytest.mark.parametrize("kind", sorted(FIXED))
@settings(max_examples=40, deadline=None)
@given(data=st.data(), start=st.integers(0, 9))
def test_fixed_width_hash_equals_duckdb(kind, data, start):
    typ, values = FIXED[kind]
    col = sliced(data.draw(st.lists(st.none() | values, max_size=40)), typ, start)
    out = np.empty(len(col), np.uint64)
    hash_column(col, out, False)
    assert out.tolist() == duckdb_hash(col).tolist()


@pytest.mark.parametrize("typ", [pa.string(), pa.large_string()])
@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.none() | st.text(max_size=40), max_size=40), start=st.integers(0, 9))
def test_string_hash_equals_duckdb(typ, texts, start):
    col = sliced(texts, typ, start)
    out = np.empty(len(col), np.uint64)
    hash_column(col, out, False)
    assert out.tolist() == duckdb_hash(col).tolist()


@settings(max_examples=80, deadline=None)
@given(text=st.text(max_size=30), junk=st.binary(max_size=9))
def test_string_hash_ignores_the_bytes_after_the_string(text, junk):
    """A tail of under 8 bytes is read with one 8-byte load and masked where the data
    buffer has room, byte by byte at the buffer's end: neither may mix in what follows."""
    raw = text.encode()
    out = np.empty(1, np.uint64)
    hash_binary(out, False, 1, 0, None, np.array([0, len(raw)], np.int32), raw + junk, False)
    assert out.tolist() == duckdb_hash(pa.array([text])).tolist()


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.tuples(st.none() | st.text(max_size=30), st.none() | st.integers(
    -(2**63), 2**63 - 1), st.none() | st.floats(), st.none() | st.booleans()), max_size=30))
def test_combined_row_hash_equals_duckdb(rows):
    cols = [pa.array([r[i] for r in rows], t)
            for i, t in enumerate([pa.string(), pa.int64(), pa.float64(), pa.bool_()])]
    out = np.empty(len(rows), np.uint64)
    for i, col in enumerate(cols):
        hash_column(col, out, i > 0)
    const = np.empty(1, np.uint64)
    hash_column(pa.array(["fingerprint"]), const, False)
    mix_constant(out, len(out), int(const[0]))
    assert out.tolist() == duckdb_hash(*cols, pa.array(["fingerprint"] * len(rows))).tolist()


def test_short_buffers_are_refused():
    col = pa.array(["a", "b"])
    out = np.empty(1, np.uint64)
    bufs = col.buffers()
    with pytest.raises(ValueError, match="shorter than the column"):  # the output
        hash_binary(out, False, 2, 0, None, bufs[1], bufs[2], False)
    with pytest.raises(ValueError, match="shorter than the column"):  # the offsets
        hash_binary(np.empty(5, np.uint64), False, 5, 0, None, bufs[1], bufs[2], False)
    with pytest.raises(ValueError, match="shorter than the column"):
        sha256_hex(bytearray(64), 2, 0, None, bufs[1], bufs[2], False)
    with pytest.raises(ValueError, match="values"):
        hash_fixed(np.empty(9, np.uint64), False, 9, 0, None, np.zeros(2, np.int64), "q")
    with pytest.raises(ValueError, match="kind"):
        hash_fixed(np.empty(1, np.uint64), False, 1, 0, None, np.zeros(2, np.int64), "x")
    bad = np.array([0, 5], np.int32)  # past the 1-byte data buffer
    with pytest.raises(ValueError, match="outside"):
        hash_binary(np.empty(1, np.uint64), False, 1, 0, None, bad, b"a", False)
    with pytest.raises(ValueError, match="outside"):
        sha256_hex(bytearray(64), 1, 0, None, bad, b"a", False)


def build_table(kids: np.ndarray, bits: int) -> np.ndarray:
    """The planner's probing table: ids in sorted order from their home slot on."""
    table = np.zeros((1 << bits) + len(kids) + 1, np.int32)
    last = -1
    for i, k in enumerate(kids.tolist()):
        last = max(k >> (64 - bits), last + 1)
        table[last] = i + 1
    return table


def bit_list(bits: np.ndarray) -> list[int]:
    return np.flatnonzero(np.unpackbits(bits, bitorder="little")).tolist()


@settings(max_examples=100, deadline=None)
@given(stored=st.sets(st.integers(0, 2**64 - 1), max_size=60),
       queries=st.lists(st.integers(0, 2**64 - 1), max_size=60), data=st.data())
def test_probe_matches_a_plain_lookup(stored, queries, data):
    kids = np.array(sorted(stored), np.uint64)
    hashes = np.arange(len(kids), dtype=np.uint64) * 7 + 1
    pairs = np.column_stack([kids, hashes]).ravel()
    bits = max(1, len(kids).bit_length() + 1)
    table = build_table(kids, bits)
    # Stored ids among the queries, some twice: the second sighting is a duplicate.
    if len(kids):
        queries += data.draw(st.lists(st.sampled_from(kids.tolist()), max_size=20))
    q = np.array(data.draw(st.permutations(queries)), np.uint64)
    # Some keys are seen already, some of those hidden.
    positions = list(range(len(kids)))
    pre_seen = set(data.draw(st.lists(st.sampled_from(positions), max_size=10))
                   if positions else [])
    hidden_pos = set(data.draw(st.lists(st.sampled_from(sorted(pre_seen)), max_size=5))
                     if pre_seen else [])
    size = (len(kids) + 7) // 8 + data.draw(st.integers(0, 2))
    seen_bits, hidden = np.zeros(size, np.uint8), np.zeros(size, np.uint8)
    for p in pre_seen:
        seen_bits[p >> 3] |= 1 << (p & 7)
    for p in hidden_pos:
        hidden[p >> 3] |= 1 << (p & 7)
    # Only the listed rows (with only_absent: whose flag is 0) are looked up.
    listed = data.draw(st.none() | st.sets(st.integers(0, max(0, len(q) - 1)))
                       if len(q) else st.none())
    rows = None if listed is None else np.array(sorted(listed), np.int64)
    only_absent = data.draw(st.booleans())
    offset = data.draw(st.integers(0, 100))
    pos, prev = np.full(len(q), -7, np.int64), np.full(len(q), 7, np.uint64)
    flag = np.array(data.draw(st.lists(st.sampled_from([0, 9]), min_size=len(q),
                                       max_size=len(q))), np.uint8)
    before = (pos.copy(), prev.copy(), flag.copy())
    expected_bits = set(bit_list(seen_bits))
    probe(table, False, pairs, seen_bits, hidden if hidden_pos else None, 64 - bits, q, pos,
          prev, flag, rows=rows, offset=offset, only_absent=only_absent,
          atomic=data.draw(st.booleans()))
    index = {int(k): i for i, k in enumerate(kids)}
    seen = set(pre_seen)
    for i, k in enumerate(q.tolist()):
        if (listed is not None and i not in listed) or (only_absent and before[2][i]):
            assert (pos[i], prev[i], flag[i]) == tuple(b[i] for b in before)
            continue
        p = index.get(k, -1)
        if p in hidden_pos:
            p = -1
        if p < 0:
            assert (pos[i], flag[i], prev[i]) == (-1, 0, 0)
        elif p in seen:
            assert (pos[i], flag[i], prev[i]) == (offset + p, 2, 0)
        else:
            assert (pos[i], flag[i], prev[i]) == (offset + p, 1, hashes[p])
            seen.add(p)
            expected_bits.add(p)
    assert bit_list(seen_bits) == sorted(expected_bits)


def test_probe_refuses_a_corrupt_table_and_short_bitmaps():
    pairs = np.array([5, 9] * 9, np.uint64)  # 9 keys: a 2-byte bitmap
    q = np.array([3], np.uint64)
    args = [np.empty(1, t) for t in (np.int64, np.uint64, np.uint8)]
    table = np.array([70, 0, 0], np.int32)  # points past the stored ids
    with pytest.raises(ValueError, match="outside the state"):
        probe(table, False, pairs, np.zeros(2, np.uint8), None, 63, q, *args)
    ok = np.array([1, 0, 0], np.int32)
    with pytest.raises(ValueError, match="wrong type or length"):
        probe(ok, False, pairs, np.zeros(1, np.uint8), None, 63, q, *args)
    with pytest.raises(ValueError, match="wrong type or length"):
        probe(ok, False, pairs, np.zeros(2, np.uint8), np.zeros(1, np.uint8), 63, q, *args)
    with pytest.raises(ValueError, match="outside the batch"):
        probe(ok, False, pairs, np.zeros(2, np.uint8), None, 63, q, *args,
              rows=np.array([1], np.int64))


@settings(max_examples=60, deadline=None)
@given(q=st.lists(st.integers(0, 2**64 - 1), max_size=60),
       cuts=st.lists(st.integers(1, 2**64 - 1), max_size=6, unique=True))
def test_split_groups_rows_by_range(q, cuts):
    cuts = sorted(cuts)
    rows, starts = np.empty(len(q), np.int64), np.empty(len(cuts) + 2, np.int64)
    split(np.array(q, np.uint64), np.array(cuts, np.uint64), rows, starts)
    bounds = [0, *cuts, 2**64]
    for r in range(len(cuts) + 1):
        assert rows[starts[r]:starts[r + 1]].tolist() == [
            i for i, k in enumerate(q) if bounds[r] <= k < bounds[r + 1]]
    assert starts[-1] == len(q)


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(0, 3)),
                     max_size=80), resync=st.booleans())
def test_classify_matches_a_plain_loop(rows, resync):
    flag = np.array([r[0] for r in rows], np.uint8)
    prev = np.array([r[1] for r in rows], np.uint64)
    hashes = np.array([r[2] for r in rows], np.uint64)
    out = [np.full(len(rows), -1, np.int64) for _ in range(3)]
    counts = classify(flag, prev, hashes, resync, *out)
    firsts = [i for i, r in enumerate(rows) if r[0] == 1]
    updates = [i for i in firsts if resync or rows[i][1] != rows[i][2]]
    expected = (updates, [i for i, r in enumerate(rows) if r[0] == 0],
                [i for i, r in enumerate(rows) if r[0] == 2])
    assert counts == (len(updates), len(firsts) - len(updates), len(expected[1]),
                      len(expected[2]))
    for got, want in zip(out, expected, strict=True):
        assert got[:len(want)].tolist() == want
    with pytest.raises(ValueError, match="shorter"):
        classify(np.zeros(len(rows) + 1, np.uint8), prev, hashes, resync, *out)


@pytest.mark.parametrize("portable", [False, True])
@settings(max_examples=80, deadline=None)
@given(texts=st.lists(st.none() | st.text(max_size=200), max_size=20), start=st.integers(0, 5))
def test_sha256_hex_equals_hashlib(portable, texts, start):
    """Both implementations (the CPU's SHA instructions where present, and portable C);
    lengths around the 55/56/64-byte padding edges come up with text up to 200 chars."""
    col = sliced(texts, pa.string(), start)
    bufs = col.buffers()
    out = bytearray(64 * len(col))
    sha256_hex(out, len(col), col.offset, bufs[0] if col.null_count else None, bufs[1],
               bufs[2], False, portable)
    for i, t in enumerate(texts):
        digest = out[64 * i: 64 * (i + 1)].decode()
        assert digest == ("0" * 64 if t is None else hashlib.sha256(t.encode()).hexdigest())


@pytest.mark.parametrize("length", [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000])
def test_sha256_hex_at_padding_edges(length):
    col = pa.array(["a" * length])
    bufs = col.buffers()
    for portable in (False, True):
        out = bytearray(64)
        sha256_hex(out, 1, 0, None, bufs[1], bufs[2], False, portable)
        assert out.decode() == hashlib.sha256(b"a" * length).hexdigest()


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(st.lists(st.integers(0, 2**64 - 1), max_size=50), max_size=6))
def test_index_add_matches_a_dict(batches):
    table = np.full(512, -1, np.int32)
    store = np.empty(400, np.uint64)
    positions: dict[int, int] = {}
    n = 0
    for ids in batches:
        q = np.array(ids, np.uint64)
        placed, fresh = np.empty(len(q), np.int64), np.empty(len(q), np.uint8)
        n += index_add(table, False, store, n, q, placed, fresh)
        for i, k in enumerate(ids):
            new = k not in positions
            if new:
                positions[k] = len(positions)
            assert (placed[i], bool(fresh[i])) == (positions[k], new)
    assert n == len(positions)
    assert store[:n].tolist() == list(positions)


def test_index_add_refuses_a_full_table_and_short_store():
    table = np.full(4, -1, np.int32)
    store = np.empty(8, np.uint64)
    out = np.empty(5, np.int64), np.empty(5, np.uint8)
    with pytest.raises(ValueError, match="full"):
        index_add(table, False, store, 0, np.arange(5, dtype=np.uint64), *out)
    with pytest.raises(ValueError, match="wrong"):
        index_add(table, False, store, 6, np.arange(5, dtype=np.uint64), *out)


def test_api_version_is_exported():
    """conn compares it with the kernel API it was written for (``conn.speedups``)."""
    import conn_speedups

    assert isinstance(conn_speedups.API_VERSION, int) and conn_speedups.API_VERSION >= 1
