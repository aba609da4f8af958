"""Stable profile ids: each old id goes to the new cluster holding most of its records,
other clusters get an id derived from their smallest record key; and the merges and
splits between the old ids and the new (docs/profiles.md, "Stable ids").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from conn.profiles.encoding import encode_ints, flat

if TYPE_CHECKING:
    from conn.profiles.engine import Previous

CHANGES = pa.schema([("kind", pa.string()), ("old_id", pa.string()), ("new_id", pa.string()),
                     ("cause", pa.string())])


@dataclass
class Assigned:
    """The ids of the re-stitched records: ``profile`` (each record's), ``old_of`` (where
    a record's id changed, the position of its old id in ``old_names``; -1 elsewhere),
    ``old_names`` (the distinct old ids of these records, sorted) and ``named`` (whether
    each of them still names a profile)."""

    profile: pa.Array
    old_of: NDArray[np.int64]
    old_names: pa.Array
    named: NDArray[np.bool_]


def assign_ids(keys_all: NDArray[Any], subset: NDArray[np.bool_],
               labels: NDArray[np.int64], prev_idx: NDArray[np.int64],
               previous: Previous) -> Assigned:
    """Profile ids of the re-stitched records' clusters: each old id goes to the new
    cluster holding most of its records (ties: the cluster with the smallest record
    key), and a cluster takes the old id it holds most records of (ties: the smallest
    id); other clusters get an id derived from their smallest record key."""
    every = bool(subset.all())  # a full build: no copies of every record's arrays
    keys = keys_all if every else keys_all[subset]
    lab = labels if every else labels[subset]
    n_lab = int(lab.max()) + 1 if len(lab) else 0
    # The smallest record key of each cluster, without sorting the records by cluster
    # (an unbuffered ufunc.at pass: a twentieth of the sort's time).
    first_key = np.full(n_lab, np.iinfo(np.uint64).max, np.uint64)
    np.minimum.at(first_key, lab, keys.astype(np.uint64, copy=False))
    at = prev_idx if every else prev_idx[subset]
    held = np.flatnonzero(at >= 0)
    # Only the old ids of these records: an incremental build reads no other.
    prev_profile = previous.records.column("profile")
    old_names, oc = ranked(prev_profile, at[held])
    n_old = len(old_names)
    if not n_old:  # a first build: every cluster gets a fresh id, no merging of arrays
        return Assigned(fresh_ids(first_key, pa.array([], pa.string()), prev_profile).take(
            pa.array(lab)), np.full(len(lab), -1, np.int64), old_names, np.zeros(0, bool))
    profile = np.full(n_lab, -1, np.int64)  # index into old_names, -1: a fresh id
    held_lab = lab[held]
    pairs, shared = np.unique(held_lab * np.int64(n_old) + oc, return_counts=True)
    plab, pold = pairs // n_old, pairs % n_old
    del pairs
    # Each old id: its best cluster (most shared, then smallest first record key).
    best = np.lexsort((first_key[plab], -shared, pold))
    first_of_old = best[_group_starts(pold[best])]
    # Each cluster: the best of the old ids that chose it (most shared, smallest id).
    cl, co, cs = plab[first_of_old], pold[first_of_old], shared[first_of_old]
    pick = np.lexsort((co, -cs, cl))
    pick = pick[_group_starts(cl[pick])]
    profile[cl[pick]] = co[pick]
    # A record keeps its id where its cluster took its old one: a fresh id is never an
    # old one, so the changed ids are found on the codes, without comparing strings.
    moved = profile[held_lab] != oc
    old_of = np.full(len(lab), -1, np.int64)
    old_of[held[moved]] = oc[moved]
    named = np.zeros(n_old, bool)
    named[profile[profile >= 0]] = True
    del held, held_lab, oc, moved
    names = old_names.take(pa.array(np.maximum(profile, 0)))
    missing = pa.array(profile < 0)
    if pc.any(missing).as_py():
        kept = names.filter(pc.invert(missing)).cast(pa.string())
        fresh = fresh_ids(first_key[profile < 0], kept, prev_profile)
        names = _fill(names, missing, fresh)
    return Assigned(names.take(pa.array(lab)), old_of, old_names, named)


def ranked(names: pa.ChunkedArray | pa.Array, at: NDArray[np.int64]
           ) -> tuple[pa.Array, NDArray[Any]]:
    """The distinct names at the positions ``at`` of ``names`` in sorted order, and the
    position among them of the name at each of ``at``. Ids as conn makes them (``p_``
    and 16 hex digits) are read as the numbers they spell, whose order is the strings'
    order: one integer sort, and no copy of the names read. Others (ids from elsewhere)
    are dictionary-encoded and the dictionary sorted, several times slower."""
    words = id_words(names, at)
    if words is not None:
        codes, first = encode_ints(words)
        return flat(names.take(pa.array(at[first]))), codes
    enc = pc.dictionary_encode(flat(names.take(pa.array(at))))
    rank = pc.sort_indices(enc.dictionary).to_numpy(zero_copy_only=False)
    place = np.empty(len(rank), np.int64)
    place[rank] = np.arange(len(rank))
    return enc.dictionary.take(pa.array(rank)), place[enc.indices.to_numpy(
        zero_copy_only=False)]


_NIBBLE = np.full(256, 255, np.uint8)
_NIBBLE[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)


def id_words(names: pa.ChunkedArray | pa.Array, at: NDArray[np.int64] | None = None
             ) -> NDArray[np.uint64] | None:
    """The number each of ``names`` (those at ``at``, when given) spells when every one
    is ``p_`` and 16 lower-case hex digits (:func:`hex_ids`), else None. Most of the
    names are read where they are, chunk by chunk, and the words picked; a few are
    picked first (then only they are read)."""
    if at is not None and len(at) * 4 < len(names):
        return id_words(names.take(pa.array(at)))
    chunks = names.chunks if isinstance(names, pa.ChunkedArray) else [names]
    parts = []
    for c in chunks:
        part = _chunk_words(c)
        if part is None:
            return None
        parts.append(part)
    words = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    return words if at is None else words[at]


def _chunk_words(names: pa.Array) -> NDArray[np.uint64] | None:
    n = len(names)
    if names.null_count or not n:
        return None if n else np.zeros(0, np.uint64)
    at = _rows18(names.cast(pa.string()))
    if at is None:
        return None
    chars = np.frombuffer(at[0], np.uint8, 18 * n, at[1]).reshape(n, 18)
    if not (np.all(chars[:, 0] == ord("p")) and np.all(chars[:, 1] == ord("_"))):
        return None
    digits = _NIBBLE[chars[:, 2:]]
    if (digits == 255).any():
        return None
    # Digit pairs into bytes, then the 8 bytes of each row read as one big-endian word.
    packed = (digits[:, 0::2] << np.uint8(4)) | digits[:, 1::2]
    return np.ascontiguousarray(packed).view(">u8").ravel().astype(np.uint64)


def _group_starts(sorted_ids: NDArray[np.int64]) -> NDArray[np.bool_]:
    """True where a run of equal values in ``sorted_ids`` starts."""
    out = np.ones(len(sorted_ids), bool)
    out[1:] = sorted_ids[1:] != sorted_ids[:-1]
    return out


def fresh_ids(first_keys: NDArray[np.uint64], taken: pa.Array,
               old_ids: pa.ChunkedArray | pa.Array) -> pa.Array:
    """``p_`` and 16 hex digits of a hash (splitmix64) of the cluster's smallest record
    key: the same cluster built from scratch gets the same id. Re-hashed with a salt on
    a collision with ``taken`` or any of ``old_ids`` (say a split-off part whose
    smallest record gave the old profile its id)."""
    salt = np.zeros(len(first_keys), np.uint64)
    while True:
        with np.errstate(over="ignore"):
            z = first_keys.astype(np.uint64) + (salt + np.uint64(1)) * \
                np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
        ids = hex_ids(z)
        reused = _reused(old_ids, ids) if len(old_ids) else taken[:0]
        taken_now = pc.is_in(ids, pa.concat_arrays([taken, reused.cast(pa.string())]))
        if salt.any():
            # The keys are distinct and the hash is a bijection of 64-bit words, so ids
            # of one salt never repeat: only differently salted ones can.
            taken_now = pc.or_(taken_now, _duplicated(ids))
        clash = taken_now.to_numpy(zero_copy_only=False)
        if not clash.any():
            return ids
        salt[clash] += np.uint64(1)  # rare (64-bit hashes): loops over clashes, not rows


#: Slots in the filter of :func:`_reused`: a 1 MB table that stays in the caches (16 MB
#: took longer to read than the exact test it spares).
_FILTER_BITS = 20


def _reused(old_ids: pa.ChunkedArray | pa.Array, ids: pa.Array) -> pa.Array:
    """The old ids equal to one of the fresh ``ids``. Old ids as conn makes them are
    first tested by their last eight characters against a table of slots set by the
    fresh ids' (one gather each, no hash of a string): only the few that pass are
    compared exactly, in one Arrow ``is_in`` (over 5M old ids it took 0.16 s, most of
    an incremental build's ids)."""
    fresh = _tails(ids)
    chunks = old_ids.chunks if isinstance(old_ids, pa.ChunkedArray) else [old_ids]
    slots = np.zeros(1 << _FILTER_BITS, bool)
    if fresh is not None:
        slots[_slot(fresh)] = True
    maybe = []
    for c in chunks:
        tails = None if fresh is None else _tails(c)
        maybe.append((c if tails is None else c.filter(pa.array(slots[_slot(tails)])))
                     .cast(pa.string()))
    if not maybe:
        return ids[:0]
    cand = pa.concat_arrays(maybe)
    return cand.filter(pc.is_in(cand, ids))


def _tails(names: pa.Array) -> NDArray[np.uint64] | None:
    """The last eight bytes of each of ``names`` as a word, read in place, when every
    one is 18 bytes long (conn's ids), else None."""
    if names.null_count or not len(names) or names.type != pa.string():
        return None
    at = _rows18(names)
    # A strided view of the data buffer: no copy of the ids.
    return None if at is None else np.ndarray((len(names),), np.uint64, at[0], at[1] + 10,
                                              (18,))


def _rows18(names: pa.Array) -> tuple[pa.Buffer, int] | None:
    """The data buffer of a string array whose every value is 18 bytes long (conn's
    ids), and where its first value starts; None when one is not."""
    offsets = np.frombuffer(names.buffers()[1], np.int32, len(names) + 1, names.offset * 4)
    if not np.all(np.diff(offsets) == 18):
        return None
    return names.buffers()[2], int(offsets[0])


def _slot(words: NDArray[np.uint64]) -> NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        return (words * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - _FILTER_BITS)


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


def hex_ids(words: NDArray[np.uint64]) -> pa.Array:
    """``p_`` and the 16 lower-case hex digits of each word, most significant first,
    written straight into an Arrow string buffer (formatting each id as a Python string
    took most of a first build's id assignment)."""
    n = len(words)
    buf = np.empty((n, 18), np.uint8)
    buf[:, 0], buf[:, 1] = ord("p"), ord("_")
    for i in range(16):  # over digit positions, not rows
        buf[:, 2 + i] = _HEX[(words >> np.uint64(60 - 4 * i)) & np.uint64(15)]
    offsets = np.arange(0, 18 * (n + 1), 18, dtype=np.int64)
    ids = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buf))
    return ids.cast(pa.string())


def _duplicated(arr: pa.Array) -> pa.Array:
    counts = pc.value_counts(arr)
    dup = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    return pc.is_in(arr, dup)


def _fill(base: pa.Array, mask: pa.Array, values: pa.Array) -> pa.Array:
    """``base`` with the positions of ``mask`` replaced by ``values`` in order."""
    idx = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
    pos = np.full(len(base), -1, np.int64)
    pos[idx] = np.arange(len(idx))
    return pc.if_else(mask, values.take(pa.array(np.maximum(pos, 0))), base)


def changes(keys_all: NDArray[Any], subset: NDArray[np.bool_], ids: Assigned,
            prev_idx: NDArray[np.int64]) -> pa.Table:
    """Merges (an old id whose records now sit in another id's profile) and splits (an
    id's records now partly in another, new profile); the cause is the smallest key of
    a new record in the resulting profile, when there is one."""
    moved = ids.old_of >= 0
    if not moved.any():
        return CHANGES.empty_table()
    pairs = pa.table({"old": ids.old_of[moved], "new_id": ids.profile.filter(pa.array(moved))}
                     ).group_by(["old", "new_id"]).aggregate([])
    old = pairs.column("old").to_numpy()
    kind = pc.if_else(pa.array(ids.named[old]), "split", "merge")
    new = pa.array(prev_idx[subset] < 0)
    keys = pa.array(keys_all[subset], pa.uint64())
    first_new = pa.table({"new_id": ids.profile.filter(new), "k": keys.filter(new)}
                         ).group_by("new_id").aggregate([("k", "min")])
    out = pa.table({"old_id": ids.old_names.take(pa.array(old)),
                    "new_id": pairs.column("new_id"), "kind": kind}
                   ).join(first_new, "new_id", join_type="left outer")
    cause = pc.if_else(pc.is_valid(out.column("k_min")), pc.binary_join_element_wise(
        "record ", out.column("k_min").cast(pa.string()), ""), pa.scalar(None, pa.string()))
    out = pa.table({"kind": out.column("kind"), "old_id": out.column("old_id"),
                    "new_id": out.column("new_id"), "cause": cause}, schema=CHANGES)
    return out.sort_by([("kind", "ascending"), ("old_id", "ascending"),
                        ("new_id", "ascending")])
