"""Built-in vectorised transforms (first version; the mapping layer extends this)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


def trim(arr: pa.Array, **_: Any) -> pa.Array:
    return pc.utf8_trim_whitespace(arr)


def lower(arr: pa.Array, **_: Any) -> pa.Array:
    return pc.utf8_lower(arr)


def upper(arr: pa.Array, **_: Any) -> pa.Array:
    return pc.utf8_upper(arr)


BUILTIN_TRANSFORMS: dict[str, Callable[..., pa.Array]] = {
    "trim": trim, "lower": lower, "upper": upper,
}
