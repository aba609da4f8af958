"""The batch types that flow through the pipeline, each sealed by the stage that made it.

``GatedBatch`` can only come from the consent gate, ``MappedBatch`` only from the mapper
given a ``GatedBatch``; :mod:`conn.runtime.delivery` only builds write requests from a
``MappedBatch``. A destination's :meth:`~conn.destination.Destination.write` verifies the
seal, so no code path hands a destination rows the gate did not pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

_GATE_SEAL = object()
_MAP_SEAL = object()


@dataclass(frozen=True)
class GatedBatch:
    """Rows that passed the consent gate (field policies already applied to tagged source
    columns). ``keys`` are the rows' primary keys as strings."""

    batch: pa.RecordBatch
    keys: pa.Array
    withheld: int = 0
    _seal: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._seal is not _GATE_SEAL:
            raise TypeError("GatedBatch can only be created by the consent gate")


@dataclass(frozen=True)
class MappedBatch:
    """Destination-shaped rows derived from a :class:`GatedBatch`; ``keys`` align with
    ``batch``. ``rejected`` holds (key, reason) for rows the mapper refused."""

    batch: pa.RecordBatch
    keys: pa.Array
    rejected: list[tuple[str, str]] = field(default_factory=list)
    _seal: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._seal is not _MAP_SEAL:
            raise TypeError("MappedBatch can only be created by the mapper")


def seal_gated(batch: pa.RecordBatch, keys: pa.Array, withheld: int) -> GatedBatch:
    """For the consent gate only."""
    return GatedBatch(batch, keys, withheld, _GATE_SEAL)


def seal_mapped(gated: GatedBatch, batch: pa.RecordBatch, keys: pa.Array,
                rejected: list[tuple[str, str]] | None = None) -> MappedBatch:
    """For the mapper only: requires the gated batch it derives from."""
    if not isinstance(gated, GatedBatch) or gated._seal is not _GATE_SEAL:
        raise TypeError("the mapper only accepts batches from the consent gate")
    return MappedBatch(batch, keys, list(rejected or ()), _MAP_SEAL)


def is_mapped(obj: Any) -> bool:
    return isinstance(obj, MappedBatch) and obj._seal is _MAP_SEAL
