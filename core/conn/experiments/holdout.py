"""Holdout assignment: which keys an experiment holds out, from a salted hash of the key.

A key is held out when the first 64 bits of ``SHA-256(salt + U+001F + key)`` (UTF-8), read
as an unsigned big-endian number, are below ``percent`` % of 2^64. The assignment depends
only on the salt, the percent and the key's text: the same in every run, process and
platform, whatever the order or batching of the rows (Python's ``hash()`` is salted per
process and would not do). A larger percent with the same salt holds out a superset.

Vectorised: SHA-256 over the whole key column (:func:`conn.digests.sha256_hex`, the
``conn-speedups`` kernel or DuckDB), then one string comparison of the fixed-width hex
prefixes (the lexicographic order of equal-width lowercase hex is the numeric order).
Syncs use it now; audiences and triggers call the same function over their key column.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conn.digests import sha256_hex

#: Joins the salt and the key before hashing (a unit separator: not in ordinary keys).
SEPARATOR = "\x1f"
#: Hex digits of the hash compared: 64 bits.
PREFIX = 16

ARMS = ("treatment", "holdout")


def threshold(percent: float | int | str | Decimal) -> int:
    """The 64-bit bound below which a key is held out: ``floor(percent / 100 * 2^64)``,
    computed in decimal so that 10 means exactly 10 % of the hash space on every
    platform."""
    share = Decimal(str(percent))
    if not Decimal(0) <= share <= Decimal(100):
        raise ValueError(f"holdout percent must be between 0 and 100, not {percent}")
    return int(share * (1 << 64) / 100)


def bucket_hex(keys: pa.Array | pa.ChunkedArray, salt: str) -> pa.Array:
    """The first 64 bits of each key's salted SHA-256, as 16 lowercase hex digits (null
    for a null key)."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    if not pa.types.is_string(keys.type):
        keys = keys.cast(pa.string())
    salted = pc.binary_join_element_wise(salt, keys, SEPARATOR)
    return pc.utf8_slice_codeunits(sha256_hex(salted), 0, PREFIX)


def held_out(keys: pa.Array | pa.ChunkedArray, percent: float | int | str | Decimal,
             salt: str) -> pa.BooleanArray:
    """True for each key the experiment holds out, False for treatment. A null key is
    never held out (the planner rejects rows without a key before anything is sent)."""
    bound = threshold(percent)
    n = len(keys)
    if bound == 0:
        return pa.array(np.zeros(n, dtype=bool))
    if bound >= 1 << 64:
        return pc.fill_null(pc.is_valid(keys), False)
    hexes = bucket_hex(keys, salt)
    return pc.fill_null(pc.less(hexes, pa.scalar(f"{bound:016x}")), False)
