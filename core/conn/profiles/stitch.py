"""Deterministic stitching: records linked by shared identifier values, under limits.

The input is the identifier graph in long form, already encoded as integers: one entry
per (record, identifier) with the record's index, the identifier's type code and a dense
value code (unique across types). A *record* is one distinct combination of identifiers
read from one edge stream.

The rule (docs/profiles.md, "Stitching"):

1. Junk values are dropped first: those declared, and those held by more than the
   type's ``max_records`` records.
2. Rounds run in order (the profile's rule sets, by default one per identifier type in
   priority order). A round joins the current clusters through the values of its types
   (connected components over clusters and value nodes). A joined component that would
   hold more distinct values of a type than that type's limit is refused as a whole:
   its clusters stay as they were before the round, so the merges of a later, lower
   priority round are the ones that yield to those an earlier round made.

Every step is whole-array numpy work and ``scipy.sparse.csgraph.connected_components``
calls (one over the whole graph, then one per round over the components that break a
limit): no Python loop over records or values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class StitchRules:
    """What :func:`stitch` applies. ``rounds``: type codes per round, in order;
    ``limits``: type code -> the most distinct values of it one profile may hold."""

    rounds: tuple[tuple[int, ...], ...]
    limits: Mapping[int, int] = field(default_factory=dict)


def drop_junk(rec: NDArray[np.int64], typ: NDArray[np.int32], val: NDArray[np.int64],
              n_val: int, max_records: NDArray[np.int64]) -> NDArray[np.bool_]:
    """A mask of the entries to keep: False where the value is held by more records than
    its type's ``max_records`` (indexed by type code; 0 means no threshold). Entries
    must not repeat a (record, value) pair."""
    held = np.bincount(val, minlength=n_val)
    val_type = np.zeros(n_val, np.int32)
    val_type[val] = typ
    cap = max_records[val_type]
    junk = (cap > 0) & (held > cap)
    return ~junk[val]


def _components(n_lab: int, lab_of_entry: NDArray[np.int64], val: NDArray[np.int64],
                n_val: int) -> NDArray[np.int64]:
    """Connected components of clusters ``0..n_lab`` joined by shared values (one entry:
    a cluster holds a value); returns the component of each cluster."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    # Each entry becomes an edge from its cluster to one cluster holding the same value
    # (whichever was written last): the components of the cluster-value graph, without
    # a node per value (fewer than half the nodes here).
    idx = np.int64 if n_lab >= 2**31 - 1 else np.int32
    lab_of_entry = lab_of_entry.astype(idx, copy=False)
    owner = np.zeros(n_val, idx)
    owner[val] = lab_of_entry
    to = owner[val]
    # An entry whose cluster is its value's owner (a value held once, the owner's own
    # entry) is a loop that joins nothing: left out, the graph here has about a third
    # of the entries as edges, and the graph's traversal is what costs.
    link = to != lab_of_entry
    # float64 weights: csgraph converts any other type to it (a copy per round).
    graph = coo_matrix((np.ones(int(link.sum()), np.float64), (lab_of_entry[link], to[link])),
                       shape=(n_lab, n_lab)).tocsr()
    _, comp = connected_components(graph, directed=True, connection="weak")
    return comp.astype(np.int64)


def _over_limit(comp_of_rec: NDArray[np.int64], n_comp: int, rec: NDArray[np.int64],
                typ: NDArray[np.int32], val: NDArray[np.int64], n_val: int,
                limits: Mapping[int, int]) -> NDArray[np.bool_]:
    """Per component: whether it holds more distinct values of a limited type than
    allowed."""
    bad = np.zeros(n_comp, bool)
    for t, limit in limits.items():
        m = typ == t
        if not m.any():
            continue
        c = comp_of_rec[rec[m]]
        pairs = distinct(c * np.int64(n_val) + val[m])
        counts = np.bincount(pairs // n_val, minlength=n_comp)
        bad |= counts > limit
    return bad


def _relabel(labels: NDArray[np.int64]) -> tuple[NDArray[np.int64], int]:
    """Labels renumbered ``0..k`` in their order (labels are small non-negative ints:
    a presence table, linear time, where ``np.unique`` would sort)."""
    if not len(labels):
        return labels.astype(np.int64), 0
    present = np.zeros(int(labels.max()) + 1, bool)
    present[labels] = True
    remap = np.cumsum(present, dtype=np.int64) - 1
    return remap[labels], int(remap[-1]) + 1


def distinct(keys: NDArray[np.int64]) -> NDArray[np.int64]:
    """The distinct values of ``keys``, sorted (a sort and a neighbour comparison)."""
    s = np.sort(keys)
    if len(s) < 2:
        return s
    keep = np.empty(len(s), bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def stitch(n_rec: int, rec: NDArray[np.int64], typ: NDArray[np.int32],
           val: NDArray[np.int64], n_val: int, rules: StitchRules) -> NDArray[np.int64]:
    """The cluster of each record (``0..k``, k clusters), under ``rules``. Junk entries
    must already be dropped (:func:`drop_junk`)."""
    return stitch_islands(n_rec, rec, typ, val, n_val, rules)[0]


def stitch_islands(n_rec: int, rec: NDArray[np.int64], typ: NDArray[np.int32],
                   val: NDArray[np.int64], n_val: int, rules: StitchRules
                   ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The cluster (as :func:`stitch`) and the island (as :func:`islands`) of each record.

    The components over every round's types come first: one that breaks no limit is a
    cluster as it is, because limits only count values, so no part of it can break one
    either, no round refuses a join inside it, and after the last round every shared
    value has joined its holders. Only the components that break a limit (a small share
    of real graphs: people sharing an e-mail, say) go through the rounds, each on its
    own, since a round's joins never cross them."""
    round_types = np.unique(np.asarray([t for r in rules.rounds for t in r], np.int32))
    in_rounds = np.isin(typ, round_types)
    every = bool(in_rounds.all())
    if every:
        comp = islands(n_rec, rec, val, n_val)
    else:
        comp = _relabel(_components(n_rec, rec[in_rounds], val[in_rounds], n_val))[0]
    isl = comp if every else islands(n_rec, rec, val, n_val)
    n_comp = int(comp.max()) + 1 if len(comp) else 0
    bad = _over_limit(comp, n_comp, rec, typ, val, n_val, rules.limits)
    if not bad.any():
        return comp, isl
    hard = bad[comp]
    local = np.cumsum(hard, dtype=np.int64) - 1
    m = hard[rec]
    labels = comp.astype(np.int64, copy=True)
    # Numbered after the accepted components so the two ranges cannot collide.
    labels[hard] = n_comp + _rounds(int(hard.sum()), local[rec[m]], typ[m], val[m],
                                    n_val, rules)
    return _relabel(labels)[0], isl


def _rounds(n_rec: int, rec: NDArray[np.int64], typ: NDArray[np.int32],
            val: NDArray[np.int64], n_val: int, rules: StitchRules) -> NDArray[np.int64]:
    """The rounds of the module docstring, in order, over every record given."""
    lab = np.arange(n_rec, dtype=np.int64)
    n_lab = n_rec
    for types in rules.rounds:
        m = np.isin(typ, np.asarray(types, np.int32))
        if not m.any():
            continue
        comp = _components(n_lab, lab[rec[m]], val[m], n_val)
        comp, n_comp = _relabel(comp)
        comp_of_rec = comp[lab]
        if n_comp == n_lab:
            continue  # nothing joined
        bad = _over_limit(comp_of_rec, n_comp, rec, typ, val, n_val, rules.limits)
        if bad.any():
            # A refused component keeps the clusters it was made of: they are numbered
            # after the accepted components so the two ranges cannot collide.
            refused = bad[comp_of_rec]
            comp_of_rec = np.where(refused, n_comp + lab, comp_of_rec)
            comp_of_rec, n_comp = _relabel(comp_of_rec)
        lab, n_lab = comp_of_rec, n_comp
    return lab


def islands(n_rec: int, rec: NDArray[np.int64], val: NDArray[np.int64],
            n_val: int) -> NDArray[np.int64]:
    """Components of the graph without limits or rounds: records that could ever affect
    each other's stitching. An incremental build re-stitches whole islands."""
    comp = _components(n_rec, rec, val, n_val)
    return _relabel(comp)[0]


def default_rounds(types: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """One round per type, in the given (priority) order."""
    return tuple((t,) for t in types)
