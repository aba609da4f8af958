"""Built-in vectorised transforms, usable in a mapping's ``transforms:`` list.

Each is ``function(array, **options) -> pyarrow.Array`` over a whole column, registered by
``conn.builtins`` through the ``register_transforms`` hook like a plugin's transforms.
Strings in, strings out unless noted; nulls stay null.

============== ==============================================================
name           effect (options)
============== ==============================================================
trim           strip surrounding whitespace
lower / upper  change case
title          Title Case
digits         keep digits only
replace        regex replace (``pattern``, ``replacement`` = "")
slice          substring (``start`` = 0, ``stop``)
nullif_empty   "" (after trimming) becomes null
to_string      cast to string
round          round numbers (``ndigits`` = 0)
abs            absolute value
parse_date     string to timestamp (``format``, strptime syntax)
normalize      identifier normalisation by kind (``kind``: email, phone, name, ...;
               phone takes ``country_code``, ``phone_format``)
sha256         SHA-256 hex of the string value
md5            MD5 hex of the string value
mask           masked for display (``kind``)
============== ==============================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from conn.consent import normalize as norm
from conn.digests import md5_hex, sha256_hex


def _s(arr: pa.Array) -> pa.Array:
    return arr if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) \
        else arr.cast(pa.string())


def trim(arr: pa.Array, **_: Any) -> pa.Array:
    """Strip leading and trailing whitespace."""
    return pc.utf8_trim_whitespace(_s(arr))


def lower(arr: pa.Array, **_: Any) -> pa.Array:
    """Lowercase."""
    return pc.utf8_lower(_s(arr))


def upper(arr: pa.Array, **_: Any) -> pa.Array:
    """Uppercase."""
    return pc.utf8_upper(_s(arr))


def title(arr: pa.Array, **_: Any) -> pa.Array:
    """Title Case."""
    return pc.utf8_title(_s(arr))


def digits(arr: pa.Array, **_: Any) -> pa.Array:
    """Keep only the digits."""
    return pc.replace_substring_regex(_s(arr), r"[^0-9]", "")


def replace(arr: pa.Array, *, pattern: str, replacement: str = "", **_: Any) -> pa.Array:
    """Replace matches of the regular expression ``pattern`` (RE2 syntax)."""
    return pc.replace_substring_regex(_s(arr), pattern, replacement)


def slice_(arr: pa.Array, *, start: int = 0, stop: int | None = None, **_: Any) -> pa.Array:
    """Substring by code points, ``start`` to ``stop`` (Python slice semantics)."""
    return pc.utf8_slice_codeunits(_s(arr), start, stop)


def nullif_empty(arr: pa.Array, **_: Any) -> pa.Array:
    """Blank strings become null."""
    s = _s(arr)
    return pc.if_else(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(s)), 0),
                      pa.scalar(None, s.type), s)


def to_string(arr: pa.Array, **_: Any) -> pa.Array:
    """Cast to string."""
    return _s(arr)


def round_(arr: pa.Array, *, ndigits: int = 0, **_: Any) -> pa.Array:
    """Round half to even, to ``ndigits`` decimals."""
    return pc.round(arr, ndigits=ndigits, round_mode="half_to_even")


def abs_(arr: pa.Array, **_: Any) -> pa.Array:
    """Absolute value."""
    return pc.abs(arr)


def parse_date(arr: pa.Array, *, format: str = "%Y-%m-%d", **_: Any) -> pa.Array:
    """Parse strings with ``format``; unparsable values become null."""
    return pc.strptime(_s(arr), format=format, unit="us", error_is_null=True)


def normalize(arr: pa.Array, *, kind: str = "text", **options: Any) -> pa.Array:
    """Normalise identifiers of ``kind`` (see :mod:`conn.consent.normalize`)."""
    return norm.normalize(arr, kind, **options)


def sha256(arr: pa.Array, **_: Any) -> pa.Array:
    """SHA-256 hex of each value (as UTF-8 text)."""
    return sha256_hex(_s(arr))


def md5(arr: pa.Array, **_: Any) -> pa.Array:
    """MD5 hex of each value (as UTF-8 text)."""
    return md5_hex(_s(arr))


def mask(arr: pa.Array, *, kind: str | None = None, **_: Any) -> pa.Array:
    """Mask for display (see :func:`conn.consent.normalize.mask`)."""
    return norm.mask(arr, kind)


BUILTIN_TRANSFORMS: dict[str, Callable[..., pa.Array]] = {
    "trim": trim, "lower": lower, "upper": upper, "title": title, "digits": digits,
    "replace": replace, "slice": slice_, "nullif_empty": nullif_empty,
    "to_string": to_string, "round": round_, "abs": abs_, "parse_date": parse_date,
    "normalize": normalize, "sha256": sha256, "md5": md5, "mask": mask,
}
