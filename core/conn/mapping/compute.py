"""Evaluating one field spec over a record batch, vectorised.

Order of operations for a field (each step optional):

1. source: ``from`` column, ``template`` ("{first} {last}": missing parts become "",
   the result is trimmed, an empty result is null), ``concat`` (nulls skipped, joined
   with ``sep``) or a constant ``value``;
2. ``transforms`` in order (built-ins and plugin-registered ones);
3. ``value_map`` (unmapped values become null);
4. ``default`` fills nulls (coalesce);
5. ``parse`` (strptime format for strings) then ``format`` (strftime, gives a string);
6. ``cast``;
7. ``hash`` (normalise by kind, then SHA-256 hex).

Conversions that fail (``cast``) are reported as a mask of failed rows.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conn.consent.normalize import normalize
from conn.digests import sha256_hex
from conn.fields import FieldSpec
from conn.mapping.coerce import cast_named, to_timestamp


def _str(arr: pa.Array) -> pa.Array:
    return arr if pa.types.is_string(arr.type) else arr.cast(pa.string())


def constant(value: Any, n: int) -> pa.Array:
    """A column of ``n`` copies of ``value``."""
    return pa.repeat(pa.scalar(value), n) if value is not None else pa.nulls(n)


def template(batch: pa.RecordBatch, text: str) -> pa.Array:
    """Fill ``{column}`` placeholders from the batch."""
    parts: list[Any] = []
    for literal, name, _, _ in string.Formatter().parse(text):
        if literal:
            parts.append(pa.scalar(literal))
        if name is not None:
            parts.append(_str(batch.column(name)))
    if not parts:
        return constant(text, batch.num_rows)
    if len(parts) == 1:
        parts.append(pa.scalar(""))
    joined = pc.binary_join_element_wise(*parts, "", null_handling="replace",
                                         null_replacement="")
    if not isinstance(joined, pa.Array):
        joined = pa.repeat(joined, batch.num_rows)
    out = pc.utf8_trim_whitespace(joined)
    return pc.if_else(pc.equal(pc.utf8_length(out), 0), pa.scalar(None, pa.string()), out)


def concat(batch: pa.RecordBatch, columns: list[str], sep: str) -> pa.Array:
    """Join columns with ``sep``, skipping nulls."""
    if len(columns) == 1:
        return _str(batch.column(columns[0]))
    arrays = [_str(batch.column(c)) for c in columns]
    return pc.binary_join_element_wise(*arrays, sep, null_handling="skip")


def value_map(arr: pa.Array, mapping: dict[Any, Any]) -> pa.Array:
    """Replace values by ``mapping``; values not in it become null."""
    keys = list(mapping)
    vals = list(mapping.values())
    if keys and all(isinstance(k, str) for k in keys) and not pa.types.is_string(arr.type):
        arr = arr.cast(pa.string())
    idx = pc.index_in(arr, value_set=pa.array(keys, type=arr.type if keys else None))
    return pa.array(vals).take(idx)


def evaluate(spec: FieldSpec, batch: pa.RecordBatch,
             transform: Callable[[str], Callable[..., pa.Array]]) -> tuple[pa.Array, np.ndarray]:
    """The field's values for every row, and the mask of rows whose cast failed."""
    n = batch.num_rows
    if spec.source is not None:
        arr = batch.column(spec.source)
    elif spec.template is not None:
        arr = template(batch, spec.template)
    elif spec.concat is not None:
        arr = concat(batch, spec.concat, spec.sep)
    else:
        arr = constant(spec.value, n)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    for name, options in spec.transforms:
        arr = transform(name)(arr, **options)
    if spec.value_map is not None:
        arr = value_map(arr, spec.value_map)
    if spec.has_default and spec.default is not None:
        arr = pc.coalesce(arr, pa.scalar(spec.default).cast(arr.type)
                          if not pa.types.is_null(arr.type) else pa.scalar(spec.default))
    failed = np.zeros(n, dtype=bool)
    if spec.parse:
        before = arr
        arr = pc.strptime(_str(arr), format=spec.parse, unit="us", error_is_null=True)
        failed |= np.asarray(pc.and_(pc.is_valid(before), pc.is_null(arr))
                             .to_numpy(zero_copy_only=False), dtype=bool)
    if spec.format:
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            before = arr
            arr = to_timestamp(arr)
            failed |= np.asarray(pc.and_(pc.is_valid(before), pc.is_null(arr))
                                 .to_numpy(zero_copy_only=False), dtype=bool)
        arr = pc.strftime(arr, format=spec.format)
    if spec.cast:
        arr, bad = cast_named(arr, spec.cast)
        failed |= bad
    if spec.hash is not None:
        opts = dict(spec.hash)
        kind = opts.pop("normalize", "text")
        arr = sha256_hex(normalize(arr, kind, **opts))
    return arr, failed
