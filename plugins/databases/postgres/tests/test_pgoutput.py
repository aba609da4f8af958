"""pgoutput messages decoded a batch at a time (conn_postgres.pgoutput and pgtuples)
against the protocol's message formats, written here byte by byte: random rows of text,
nulls and unchanged TOAST values in inserts, updates (with and without the old row) and
deletes (by key and with the whole old row) decode to the values a value-by-value
reading of the same messages gives."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from conn_postgres.pgoutput import UNCHANGED, Decoder
from hypothesis import given, settings
from hypothesis import strategies as st

COLUMNS = ["id", "name", "note"]
KEYS = [True, False, False]

value = st.one_of(st.none(), st.text(max_size=12), st.just(UNCHANGED))
row = st.lists(value, min_size=len(COLUMNS), max_size=len(COLUMNS))


def tuple_data(values: list[Any]) -> bytes:
    out = struct.pack(">H", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v is UNCHANGED:
            out += b"u"
        else:
            raw = v.encode()
            out += b"t" + struct.pack(">I", len(raw)) + raw
    return out


def relation(oid: int = 16384) -> bytes:
    cols = b"".join(struct.pack(">B", int(k)) + c.encode() + b"\0" + struct.pack(">Ii", 25, -1)
                    for c, k in zip(COLUMNS, KEYS, strict=True))
    return (b"R" + struct.pack(">I", oid) + b"public\0people\0d" + struct.pack(">H", len(COLUMNS))
            + cols)


def change(kind: str, new: list[Any] | None, old: list[Any] | None, ident: bytes) -> bytes:
    head = kind.encode() + struct.pack(">I", 16384)
    if kind == "I":
        return head + b"N" + tuple_data(new or [])
    if kind == "D":
        return head + ident + tuple_data(old or [])
    return head + (ident + tuple_data(old or []) if old is not None else b"") \
        + b"N" + tuple_data(new or [])


def expected(kind: str, new: list[Any] | None, old: list[Any] | None,
             ident: bytes) -> tuple[list[Any], list[int]]:
    """What a value-by-value reading gives, and the columns left unchanged (unsent)."""
    if kind == "D":
        assert old is not None
        vals = [v if (KEYS[i] or ident == b"O") else None for i, v in enumerate(old)]
    else:
        assert new is not None
        vals = list(new)
    unsent = []
    for i, v in enumerate(vals):
        if v is UNCHANGED:
            if old is not None and ident == b"O" and old[i] is not UNCHANGED and kind == "U":
                vals[i] = old[i]
            else:
                vals[i] = None
                unsent.append(i)
    return vals, unsent


change_spec = st.one_of(
    st.tuples(st.just("I"), row, st.none(), st.just(b"")),
    st.tuples(st.just("U"), row, st.none(), st.just(b"")),
    st.tuples(st.just("U"), row, row, st.just(b"O")),
    st.tuples(st.just("U"), row, row.map(lambda r: [r[0], None, None]), st.just(b"K")),
    st.tuples(st.just("D"), st.none(), row.map(lambda r: [r[0], None, None]), st.just(b"K")),
    st.tuples(st.just("D"), st.none(), row, st.just(b"O")),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(change_spec, max_size=30), st.integers(0, 30))
def test_a_batch_decodes_to_what_each_value_reads(changes, cut):
    cut = min(cut, len(changes))
    dec = Decoder("public", "people")
    dec.feed(relation())
    parts = []
    # Two transactions; the first is handed out before the second commits.
    for i, (kind, new, old, ident) in enumerate(changes):
        if i == cut:
            dec.feed(b"C" + struct.pack(">bQQq", 0, 0, 98, 0))
        dec.feed(change(kind, new, old, ident))
        if i == cut:
            parts.append(dec.take())
    dec.feed(b"C" + struct.pack(">bQQq", 0, 0, 99, 0))
    parts.append(dec.take())
    want = [expected(*c) for c in changes]
    got_rows: list[list[Any]] = []
    got_unsent: list[tuple[int, int]] = []
    for part in parts:
        if part is None:
            continue
        cols = part.text_columns()
        got_unsent.extend((len(got_rows) + r, c) for r, c in part.unchanged)
        got_rows.extend(list(r) for r in zip(*(c.to_pylist() for c in cols), strict=True))
    assert got_rows == [w[0] for w in want]
    assert sorted(got_unsent) == sorted((r, c) for r, (_, cs) in enumerate(want) for c in cs)
    assert dec.committed == 0 and dec.take() is None
    assert dec.commit_end == 99


def test_a_tuple_in_binary_mode_or_not_utf8_is_refused():
    dec = Decoder("public", "people")
    dec.feed(relation())
    dec.feed(b"I" + struct.pack(">I", 16384) + b"N" + struct.pack(">H", 3)
             + b"b" + struct.pack(">I", 1) + b"x" + b"nn")
    dec.feed(b"C" + struct.pack(">bQQq", 0, 0, 99, 0))
    with pytest.raises(ValueError, match="binary mode"):
        dec.take().text_columns()
    dec.feed(b"I" + struct.pack(">I", 16384) + b"N" + tuple_data(["1", None, None])[:-2]
             + b"t" + struct.pack(">I", 2) + b"\xff\xfe" + b"n")
    dec.feed(b"C" + struct.pack(">bQQq", 0, 0, 100, 0))
    with pytest.raises(ValueError, match="UTF-8"):
        dec.take().text_columns()
