"""pgoutput TupleData of many changes read at once, column by column, into Arrow.

A TupleData is a column count (Int16) then, per column, a kind byte (``t`` text, ``n``
null, ``u`` unchanged TOAST value, not sent) and, for ``t``, a length (Int32) and the
value's bytes. :func:`text_columns` walks all the tuples of a batch of messages together
with numpy, one step per column (not per row, not per value): each step reads every
row's kind and length at its current offset, and the values' bytes are gathered into one
Arrow string array per column, null where no text was sent. So decoding costs a few
array operations per column whatever the batch's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

TEXT, NULL, UNCHANGED_TOAST = 0x74, 0x6E, 0x75


def text_columns(payloads: Sequence[bytes], starts: Sequence[int],
                 ncols: int) -> tuple[list[pa.Array], np.ndarray]:
    """The text of each column of the TupleData at ``starts[i]`` in ``payloads[i]`` (one
    tuple per message), as string arrays (null unless sent as text), and the kind byte
    of every value (rows x columns). ``ValueError`` when a tuple does not hold
    ``ncols`` columns or a value of another kind (binary mode) or not UTF-8."""
    n = len(payloads)
    kinds = np.zeros((n, ncols), dtype=np.uint8)
    if not n:
        return [pa.array([], pa.string()) for _ in range(ncols)], kinds
    sizes = np.fromiter(map(len, payloads), dtype=np.int64, count=n)
    pos = np.zeros(n, dtype=np.int64)
    np.cumsum(sizes[:-1], out=pos[1:])
    pos += np.asarray(starts, dtype=np.int64)
    buf = np.frombuffer(b"".join(payloads), dtype=np.uint8)
    counts = _be(buf, pos, 2)
    if (counts != ncols).any():
        raise ValueError(f"pgoutput: a tuple holds {int(counts[counts != ncols][0])} "
                         f"columns, the relation {ncols}")
    pos += 2
    out = []
    for j in range(ncols):
        kind = buf[pos]
        kinds[:, j] = kind
        text = kind == TEXT
        if not (text | (kind == NULL) | (kind == UNCHANGED_TOAST)).all():
            bad = kind[~(text | (kind == NULL) | (kind == UNCHANGED_TOAST))][0]
            raise ValueError(f"pgoutput: unknown tuple value kind {chr(bad)!r} "
                             "(binary mode is not used by conn)")
        lengths = np.zeros(n, dtype=np.int64)
        lengths[text] = _be(buf, pos[text] + 1, 4)
        out.append(_strings(buf, pos + 5, lengths, text))
        pos += 1 + np.where(text, 4 + lengths, 0)
    return out, kinds


def _be(buf: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """Big-endian unsigned integers of ``width`` bytes at offsets ``at``."""
    value = np.zeros(len(at), dtype=np.int64)
    for k in range(width):
        value = (value << 8) | buf[at + k]
    return value


def _strings(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
             valid: np.ndarray) -> pa.Array:
    """A string array of the ``lengths`` bytes at ``starts`` of ``buf`` (null where not
    ``valid``), checked as UTF-8."""
    n = len(lengths)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    # Every byte's source offset: its value's start, plus its place within the value.
    data = buf[np.repeat(starts - offsets[:-1], lengths) + np.arange(total, dtype=np.int64)]
    large = total >= 2**31 - 1
    typ = pa.large_string() if large else pa.string()
    nulls = n - int(valid.sum())
    validity = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    arr = pa.Array.from_buffers(
        typ, n, [validity, pa.py_buffer(offsets if large else offsets.astype(np.int32)),
                 pa.py_buffer(data)], null_count=nulls)
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"pgoutput: a text value is not UTF-8 ({exc})") from None
    return arr
