"""The suppression list as the consent gate applies it: rows of forgotten people are
withheld (reason ``suppressed``), whatever their consent, on every path that goes
through the gate (batch syncs, dry runs and previews, and later streaming and triggers).

A row is suppressed when one of its **identity values** is listed: its primary key (as
the state stores it), its consent subject (``consent.subject``), and every source column
the mapping sends, unchanged or transformed, to a field the destination object declares
as an identifier (the match keys: an e-mail address, an external id). Values are
normalised (:func:`conn.privacy.identifiers.normalize`) and their HMAC digests compared
with the list's, over the batch's *unique* values only, with Arrow and DuckDB (no Python
loop over rows). An empty list costs nothing: :meth:`GateSuppression.mask` returns at
once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from conn.privacy.identifiers import digests, normalize

if TYPE_CHECKING:
    from conn.fields import FieldSpec
    from conn.state.contracts import PrivacyStore
    from conn.sync_context import SyncContext

#: The reason withheld rows are counted under in the gate's summary.
REASON = "suppressed"


def _words(digests: pa.Array) -> np.ndarray:
    """Hex digests (64 characters each, no nulls) as rows of four big-endian 64-bit
    words, converted in bulk (no Python object per value)."""
    if isinstance(digests, pa.ChunkedArray):
        digests = digests.combine_chunks()
    n = len(digests)
    if not n:
        return np.empty((0, 4), dtype=np.uint64)
    start = int(np.frombuffer(digests.buffers()[1], np.int32, count=1,
                              offset=4 * digests.offset)[0])
    text = digests.buffers()[2].to_pybytes()[start:start + 64 * n]
    raw = bytes.fromhex(text.decode("ascii"))
    return np.frombuffer(raw, dtype=">u8").reshape(n, 4).astype(np.uint64)


class Suppression:
    """A project's suppression list: its salt and digests (hex). The digests are kept as
    256-bit rows sorted by their first 64 bits, so that a batch's digests are found by
    a binary search on that word and confirmed on all 256 bits: no hash table is built
    per batch (``pc.is_in`` over 100k digests rebuilt one for every batch)."""

    def __init__(self, salt: bytes | None = None,
                 listed: Collection[str] | pa.Array = ()) -> None:
        self.salt = salt
        arr = listed if isinstance(listed, pa.Array | pa.ChunkedArray) else pa.array(
            list(listed), pa.string())
        arr = arr.drop_null().cast(pa.string())
        if len(arr) and not pc.all(pc.equal(pc.utf8_length(arr), 64)).as_py():
            raise ValueError("suppression digests are 64 hexadecimal digits")
        words = _words(arr)
        self.words = words[np.argsort(words[:, 0], kind="stable")]
        self.first = np.ascontiguousarray(self.words[:, 0])

    @property
    def active(self) -> bool:
        """Whether anyone is listed."""
        return self.salt is not None and len(self.first) > 0

    @classmethod
    def load(cls, privacy: PrivacyStore | None) -> Suppression:
        """The list kept by a state store (empty when it keeps none)."""
        if privacy is None:
            return cls()
        listed = privacy.suppressed()
        return cls(privacy.salt(create=False) if len(listed) else None, listed)

    def listed_values(self, values: pa.Array) -> pa.Array:
        """Those of ``values`` (normalised, unique, no nulls) whose digest is listed."""
        if not self.active or not len(values):
            return values.slice(0, 0)
        assert self.salt is not None
        mine = _words(digests(values, self.salt))
        left = np.searchsorted(self.first, mine[:, 0], side="left")
        right = np.searchsorted(self.first, mine[:, 0], side="right")
        hit = np.zeros(len(mine), dtype=bool)
        # Entries sharing a first word (about never) are each compared.
        for step in range(int((right - left).max())):
            at = left + step
            ok = at < right
            hit |= ok & (self.words[np.minimum(at, len(self.first) - 1)] == mine).all(axis=1)
        return values.filter(pa.array(hit))


def identity_columns(ctx: SyncContext, specs: Iterable[FieldSpec], subject: str | None
                     ) -> list[str]:
    """The source columns whose values identify a row's person (see the module
    docstring), in a stable order, primary key columns first. A one-column primary key
    is left out: the keys the gate is handed are that column as text."""
    idents = set(ctx.object.identifiers)
    pk = list(ctx.stream.primary_key)
    out = pk if len(pk) > 1 else []
    if subject:
        out.append(subject)
    out += [s.columns[0] for s in specs if s.is_direct and s.field in idents]
    return [c for c in dict.fromkeys(out) if len(pk) > 1 or c not in pk]


class GateSuppression:
    """The suppression check of one sync's gate."""

    def __init__(self, suppression: Suppression, columns: list[str]) -> None:
        self.suppression = suppression
        self.columns = columns

    @classmethod
    def for_gate(cls, ctx: SyncContext, specs: Iterable[FieldSpec], subject: str | None
                 ) -> GateSuppression:
        """The check for a gate built from ``ctx`` (its list: ``ctx.suppression``)."""
        listed = getattr(ctx, "suppression", None) or Suppression()
        return cls(listed, identity_columns(ctx, specs, subject))

    def mask(self, batch: pa.RecordBatch, keys: pa.Array) -> np.ndarray | None:
        """Boolean mask of the suppressed rows, or None when there are none."""
        if not self.suppression.active or not batch.num_rows:
            return None
        cols = [normalize(keys)] + [normalize(batch.column(c)) for c in self.columns
                                    if c in batch.schema.names]
        unique = pc.unique(pa.concat_arrays(cols)).drop_null()
        listed = self.suppression.listed_values(unique)
        if not len(listed):
            return None
        hit = np.zeros(batch.num_rows, dtype=bool)
        for col in cols:
            hit |= pc.fill_null(pc.is_in(col, value_set=listed), False).to_numpy(
                zero_copy_only=False)
        return hit if hit.any() else None

    def withhold(self, decision: Any, batch: pa.RecordBatch, keys: pa.Array) -> None:
        """Withhold the suppressed rows of a gate's ``decision``: they fail, with
        ``suppressed`` as their reason whatever their consent."""
        decision.suppressed = self.mask(batch, keys)
        if decision.suppressed is not None:
            decision.passed &= ~decision.suppressed
            decision.worst[decision.suppressed] = -1
