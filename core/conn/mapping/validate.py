"""Row checks against a destination field's JSON Schema, vectorised.

Each check yields a boolean mask of failing rows and a reason; the mapper rejects those
rows (``MappedBatch.rejected``) and builds reason strings only for them. Checked:
``required`` (null), ``format: email``, ``minLength``/``maxLength``, ``pattern``,
``enum``, ``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: A pragmatic e-mail shape: one @, no blanks, a dot in the domain.
EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[^@\s.]+$"


def _np(mask: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def field_failures(name: str, arr: pa.Array, prop: Mapping[str, Any], *, required: bool,
                   check_format: bool = True) -> Iterator[tuple[np.ndarray, str]]:
    """Masks of rows whose value breaks ``prop``, each with a reason."""
    if required:
        yield _np(pc.is_null(arr)), f"{name}: required field is empty"
    if not prop:
        return
    t = arr.type
    is_str = pa.types.is_string(t) or pa.types.is_large_string(t)
    if is_str:
        if check_format and prop.get("format") == "email":
            yield _np(pc.invert(pc.match_substring_regex(arr, EMAIL_RE))), \
                f"{name}: not an e-mail address"
        if check_format and "pattern" in prop:
            yield _np(pc.invert(pc.match_substring_regex(arr, prop["pattern"]))), \
                f"{name}: does not match pattern {prop['pattern']!r}"
        if "maxLength" in prop:
            yield _np(pc.greater(pc.utf8_length(arr), prop["maxLength"])), \
                f"{name}: longer than {prop['maxLength']} characters"
        if "minLength" in prop:
            yield _np(pc.less(pc.utf8_length(arr), prop["minLength"])), \
                f"{name}: shorter than {prop['minLength']} characters"
    if "enum" in prop and check_format:
        allowed = [v for v in prop["enum"] if v is not None]
        try:
            values = pa.array(allowed, type=t)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            values = pa.array([], type=t)
        bad = pc.and_(pc.is_valid(arr), pc.invert(pc.is_in(arr, value_set=values)))
        yield _np(bad), f"{name}: not one of {prop['enum']}"
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        for key, op, word in (("minimum", pc.less, "below minimum"),
                              ("maximum", pc.greater, "above maximum"),
                              ("exclusiveMinimum", pc.less_equal, "not above"),
                              ("exclusiveMaximum", pc.greater_equal, "not below")):
            if key in prop:
                yield _np(op(arr, prop[key])), f"{name}: {word} {prop[key]}"
