"""One build of a profile set, in memory: identifier entries in, profiles out.

Input: the entries (``rkey``: a record's key, ``ident``: ``type \\x1f value``), every
record read this build; and what the previous build stored (each record's profile and
island, and its entries). Output: each record's profile id and island, the merges and
splits, and the junk values found.

The encoding into integers is :mod:`conn.profiles.encoding`, the graph work
:mod:`conn.profiles.stitch`, the ids :mod:`conn.profiles.ids`. An incremental build
re-stitches only the islands (components without limits) that hold a new or vanished
record's identifiers; the others keep their profiles untouched, which gives the same
profiles as a full build (docs/profiles.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from conn.profiles.encoding import (
    SEP,
    Idents,
    encode,
    encode_idents,
    encode_ints,
    flat,
    in_runs,
    to_numpy,
)
from conn.profiles.ids import CHANGES, assign_ids, changes
from conn.profiles.stitch import StitchRules, drop_junk, stitch_islands

__all__ = ["CHANGES", "ENTRIES", "RECORDS", "SEP", "Delta", "Entries", "EntriesIn",
           "Outcome", "Previous", "Rules", "build", "build_changes", "build_incremental",
           "empty_previous"]


@dataclass(frozen=True)
class Rules:
    """Type names in priority order, rounds of type names, limits and junk thresholds
    by type name, and declared junk identifiers (``type \\x1f value``)."""

    types: tuple[str, ...]
    rounds: tuple[tuple[str, ...], ...]
    limits: dict[str, int] = field(default_factory=dict)
    max_records: dict[str, int] = field(default_factory=dict)
    junk: frozenset[str] = frozenset()


class Entries(Protocol):
    """The last build's entries as an incremental build reads them: two questions, so
    that a store can answer them without loading every entry."""

    def of(self, rkeys: pa.Array) -> pa.Table:
        """The entries (rkey, ident) of the records ``rkeys``."""

    def holding(self, idents: pa.Array) -> pa.Table:
        """The entries (rkey, ident) holding any of ``idents``."""


class EntriesIn:
    """:class:`Entries` of the DuckDB table ``table`` on ``con`` (the store's, or an
    Arrow table registered): each question is one hash of the values asked for, probed
    over both cores (Arrow's ``is_in`` over a table of many chunks hashed the values
    again for each chunk: 1.2 s at 11M entries). A table with the column ``h``
    (DuckDB's ``hash(ident)``, as the store keeps it) is asked for identifiers by their
    hashes, and the rows found compared exactly: 11M strings scanned took 0.23 s, their
    hashes 0.10 s."""

    def __init__(self, con: Any, table: str) -> None:
        self.con, self.table = con, table
        self.hashed = "h" in con.sql(f"SELECT * FROM {table} LIMIT 0").columns

    def _where(self, column: str, values: pa.Array, of: str = "v") -> pa.Table:
        """The entries whose ``column`` is ``of`` (an expression of ``v``) of a value."""
        self.con.register("_wanted", pa.table({"v": values}))
        try:
            return self.con.sql(f"SELECT rkey, ident FROM {self.table} WHERE {column} IN "
                                f"(SELECT {of} FROM _wanted)").to_arrow_table().cast(ENTRIES)
        finally:
            self.con.unregister("_wanted")

    def of(self, rkeys: pa.Array) -> pa.Table:
        return self._where("rkey", rkeys)

    def holding(self, idents: pa.Array) -> pa.Table:
        if not self.hashed:
            return self._where("ident", idents)
        found = self._where("h", idents, of="hash(v)")
        # Another identifier sharing a hash is not one of these.
        return found.filter(pc.is_in(found.column("ident"), idents))


@contextlib.contextmanager
def _asked(entries: pa.Table | Entries) -> Iterator[Entries]:
    """``entries`` as :class:`Entries` (a table in memory through DuckDB)."""
    if not isinstance(entries, pa.Table):
        yield entries
        return
    import duckdb

    con = duckdb.connect()
    try:
        con.register("entries", entries)
        yield EntriesIn(con, "entries")
    finally:
        con.close()


@dataclass
class Previous:
    """What the last build stored: ``records`` (rkey uint64, profile string, island
    int64), ``entries`` (rkey, ident; a table or a store's :class:`Entries`) and
    ``junk`` (ident, records). Empty tables for a first build. Without ``junk`` a build
    re-stitches everything."""

    records: pa.Table
    entries: pa.Table | Entries
    junk: pa.Table | None = None


@dataclass
class Outcome:
    """A build's result: ``records`` (rkey, profile, island) for every record, the
    ``restitched`` re-stitched ones last; ``changes`` (kind, old_id, new_id, cause) for
    merges and splits; ``junk`` (ident, records); and for an incremental build its
    :class:`Delta` (None: a full build, every record stitched anew)."""

    records: pa.Table
    changes: pa.Table
    junk: pa.Table
    restitched: int
    delta: Delta | None = None


@dataclass
class Delta:
    """How an incremental build's records differ from the previous build's: ``dropped``
    (keys of the previous records re-stitched or vanished), ``vanished`` (keys of the
    previous records not read any more), ``new_entries`` (a mask over the build's
    entries: those of records new in it) and ``replaced`` (the distinct ids the dropped
    records had)."""

    dropped: pa.Array
    vanished: pa.Array
    new_entries: pa.Array
    replaced: pa.Array


RECORDS = pa.schema([("rkey", pa.uint64()), ("profile", pa.string()), ("island", pa.int64())])
ENTRIES = pa.schema([("rkey", pa.uint64()), ("ident", pa.string())])
JUNK = pa.schema([("ident", pa.string()), ("records", pa.int64())])


def empty_previous() -> Previous:
    """The state before a first build."""
    return Previous(RECORDS.empty_table(), ENTRIES.empty_table())


def build(entries: pa.Table, rules: Rules, previous: Previous, *,
          full: bool = False) -> Outcome:
    """Stitch ``entries`` under ``rules``, keeping the ids of ``previous``. Entries must
    be distinct (record, identifier) pairs, as :mod:`conn.profiles.edges` reads them."""
    if not full and previous.records.num_rows and previous.junk is not None:
        return build_incremental(entries, rules, previous)
    rec, rkeys = encode(entries.column("rkey"))
    ids = encode_idents(entries.column("ident"), rules.types,
                         pa.array(sorted(rules.junk), pa.string()))
    val, typ = ids.codes, ids.typ
    n_rec, n_val = len(rkeys), len(ids.first)
    caps = np.array([rules.max_records.get(t, 0) for t in rules.types] + [0], np.int64)
    keep = drop_junk(rec, typ, val, n_val, caps)
    keep &= ~ids.dropped
    junk = _junk_report(val, keep, ids, n_val)
    rec, typ, val = rec[keep], typ[keep], val[keep]
    # The unfiltered arrays and the identifiers' codes are not read past here, nor are
    # the entries after stitching: each is freed as soon as it is done with (the list
    # hands the entries over), so none is part of the peak of the lookups and ids.
    del keep, ids
    pa.default_memory_pool().release_unused()
    keys = to_numpy(rkeys)
    prev_idx = _Index(to_numpy(previous.records.column("rkey"))).find(keys)
    # Every record: without the previous junk a build cannot tell which islands a value
    # turning junk (or ceasing to be) splits or joins.
    subset = np.ones(n_rec, bool)
    graph = [rec, typ, val]
    del rec, typ, val
    return _finish(rkeys, keys, graph, n_val, subset, prev_idx, junk, rules, previous)


def _finish(rkeys: pa.Array, keys: NDArray[Any], graph: list[NDArray[Any]], n_val: int,
            subset: NDArray[np.bool_], prev_idx: NDArray[np.int64], junk: pa.Table,
            rules: Rules, previous: Previous) -> Outcome:
    """Stitch the records of ``subset``, give them ids, merge them into the previous
    records; ``graph`` holds the entries left after junk (``rec``, ``typ``, ``val``),
    emptied once they are stitched."""
    labels, island = _stitch_subset(subset, graph[0], graph[1], graph[2], n_val, rules)
    graph.clear()
    ids = assign_ids(keys, subset, labels, prev_idx, previous)
    del labels
    out = _records(rkeys, subset, ids.profile, island, prev_idx, previous)
    del island
    return Outcome(out, changes(keys, subset, ids, prev_idx), junk, int(subset.sum()))


def build_incremental(entries: pa.Table, rules: Rules, previous: Previous) -> Outcome:
    """The same result as :func:`build`, reading the previous build instead of encoding
    every entry: the current entries are the previous ones less those of vanished
    records plus those of new records (a record's key is its identifiers), so the
    changes are found and :func:`build_changes` stitches only what they touch. The
    outcome holds every record."""
    rk = to_numpy(entries.column("rkey"))
    prev_keys = to_numpy(previous.records.column("rkey"))
    at = _Index(prev_keys).find(rk)  # each entry's record in the previous build, -1: new
    new_entry = at < 0
    present = np.zeros(len(prev_keys), bool)
    present[at[~new_entry]] = True
    del at, rk
    out, dropped = _changed(entries.filter(pa.array(new_entry)),
                            pa.array(prev_keys[~present], pa.uint64()), rules, previous)
    assert out.delta is not None
    # Records not re-stitched keep what they had; vanished ones leave.
    keep = np.ones(len(prev_keys), bool)
    keep[dropped] = False
    out.records = pa.concat_tables([previous.records.filter(pa.array(keep)).cast(RECORDS),
                                    out.records])
    out.delta.new_entries = pa.array(new_entry)
    return out


def build_changes(added: pa.Table, vanished: pa.Array, rules: Rules,
                  previous: Previous) -> Outcome:
    """Stitch the changes to the previous build: ``added``, the entries of records new
    since (a record already in the previous build is left as it is: its key stands for
    its identifiers), and ``vanished``, the keys of records no longer read. The
    profiles are those :func:`build` makes of the previous entries less the vanished
    records' plus the added, and only the islands holding a touched identifier are
    read (two questions to the stored entries) and stitched again.

    The outcome's ``records`` are the re-stitched records only: every other record keeps
    what ``previous.records`` gives it, less the ``delta.dropped`` keys; the
    ``delta.new_entries`` mask is over ``added``."""
    return _changed(added, vanished, rules, previous)[0]


def _changed(added: pa.Table, vanished: pa.Array, rules: Rules, previous: Previous
             ) -> tuple[Outcome, NDArray[np.int64]]:
    """:func:`build_changes`, and the positions of the dropped previous records."""
    assert previous.junk is not None
    prev_keys = to_numpy(previous.records.column("rkey"))
    # One index of the previous keys for every membership question below (a sort or a
    # hash of 5M keys per question was most of an incremental build).
    index = _Index(prev_keys)
    new_entry = index.find(to_numpy(added.column("rkey"))) < 0
    added = added if new_entry.all() else added.filter(pa.array(new_entry))
    gone_at = index.find(to_numpy(vanished)) if len(vanished) else np.zeros(0, np.int64)
    gone_at = gone_at[gone_at >= 0]
    present = np.ones(len(prev_keys), bool)
    present[gone_at] = False
    gone_keys = pa.array(prev_keys[gone_at], pa.uint64())
    # Filtered before being combined: only the selected strings are copied.
    new_ids = flat(added.column("ident"))
    with _asked(previous.entries) as stored:
        gone_ids = flat(stored.of(gone_keys).column("ident")) if len(gone_keys) else \
            new_ids[:0]
        touched = pc.unique(pa.concat_arrays([new_ids, gone_ids]))
        held = stored.holding(touched)
        # Holders now of each touched value: before, less the vanished, plus the new.
        counts = _count(flat(held.column("ident")), touched) - \
            _count(gone_ids, touched) + _count(new_ids, touched)
        caps = np.array([rules.max_records.get(t, 0) for t in rules.types] + [0], np.int64)
        cap = caps[_type_codes(touched, rules.types)]
        over = (cap > 0) & (counts > cap)
        # Junk: the previous junk that is not touched, the touched values over their cap.
        old_junk = previous.junk.filter(pc.invert(pc.is_in(previous.junk.column("ident"),
                                                           touched)))
        junk = pa.concat_tables([
            old_junk.cast(JUNK), pa.table({"ident": touched.filter(pa.array(over)),
                                           "records": pa.array(counts[over], pa.int64())})])
        del counts, cap, over
        # The islands of the previous holders of touched values (still read): their
        # records are stitched again, with the new records.
        holders = index.find(to_numpy(held.column("rkey")))
        del held
        holders = holders[holders >= 0]
        holders = holders[present[holders]]
        islands_prev = to_numpy(previous.records.column("island"))
        hit = np.zeros(int(islands_prev.max()) + 2 if len(islands_prev) else 1, bool)
        hit[islands_prev[holders]] = True
        sub_prev = hit[islands_prev]
        sub_prev &= present
        sub_at = np.flatnonzero(sub_prev)
        kept_entries = stored.of(pa.array(prev_keys[sub_at], pa.uint64()))
    sub_entries = pa.concat_tables([kept_entries.cast(ENTRIES), added.cast(ENTRIES)])
    del kept_entries
    rk = to_numpy(sub_entries.column("rkey"))
    rec, first = encode_ints(rk)
    keys = rk[first]
    # A new record's -1 picks the -1 appended.
    prev_idx = np.append(sub_at, -1)[_Index(prev_keys[sub_at]).find(keys)]
    ids = encode_idents(sub_entries.column("ident"), rules.types, pa.concat_arrays([
        flat(junk.column("ident")), pa.array(sorted(rules.junk), pa.string())]))
    keep = ~ids.dropped
    graph = [rec[keep], ids.typ[keep], ids.codes[keep]]
    n_val = len(ids.first)
    del ids, rec, keep
    out = _finish(pa.array(keys, pa.uint64()), keys, graph, n_val, np.ones(len(keys), bool),
                  prev_idx, junk, rules, previous)
    dropped = np.flatnonzero(sub_prev | ~present)
    out.delta = Delta(pa.array(prev_keys[dropped], pa.uint64()), gone_keys,
                      pa.array(new_entry),
                      pc.unique(flat(previous.records.column("profile").take(
                          pa.array(dropped)))))
    return out, dropped


class _Index:
    """Positions of keys in a table of unique keys, the table sorted once (when first
    searched: a hash lookup needs no sort)."""

    #: Above this many keys in no order, asked for or in the table, a hash lookup beats
    #: a binary search, whose every probe then misses the caches (2M people: 10 s
    #: against 1.5 s), and sorting the table (0.5 s for 5M records' keys).
    HASHED = 1 << 16

    def __init__(self, table: NDArray[Any]) -> None:
        self.table = table

    @cached_property
    def in_order(self) -> bool:
        """Whether the table is sorted already (a full build's records come sorted by
        key): then neither a sort nor a sorted copy is made."""
        return bool(np.all(self.table[1:] > self.table[:-1]))

    @cached_property
    def order(self) -> NDArray[np.int64]:
        if self.in_order:
            return np.arange(len(self.table))
        return np.argsort(self.table, kind="stable")

    @cached_property
    def sorted(self) -> NDArray[Any]:
        return self.table if self.in_order else self.table[self.order]

    #: Above this many keys in no order asked for at once, DuckDB's hash join over both
    #: cores beats sorting them for a binary search.
    JOINED = 1 << 20

    def find(self, keys: NDArray[Any]) -> NDArray[np.int64]:
        """The position of each of ``keys`` in the table, -1 where absent."""
        if not len(self.table):
            return np.full(len(keys), -1, np.int64)
        unsorted_table = "order" not in self.__dict__ and len(self.table) > self.HASHED \
            and not in_runs(self.table)
        if unsorted_table or (len(keys) > self.JOINED and not in_runs(keys)):
            return _joined(self.table, keys)
        if len(keys) > 4096 and not in_runs(keys):
            # Searched in order, each probe starts near the last one's path: 55k keys
            # in 5M took 42 ms in no order, 7 ms sorted (plus 4 ms to sort them).
            by = np.argsort(keys)
            out = np.empty(len(keys), np.int64)
            out[by] = self.find(keys[by])
            return out
        # In place where numpy allows: a rebuild looks up every record here.
        pos = np.searchsorted(self.sorted, keys)
        np.minimum(pos, len(self.sorted) - 1, out=pos)
        miss = self.sorted[pos] != keys
        out = self.order[pos]
        del pos
        out[miss] = -1
        return out


def _joined(table: NDArray[Any], keys: NDArray[Any]) -> NDArray[np.int64]:
    """The position of each of ``keys`` in ``table`` (unique keys), -1 where absent, by
    DuckDB's hash join over both cores: an incremental build at 2M people looks up 11M
    entries' records in 5M, 0.6-1.2 s here against 1.4-2.0 s for Arrow's ``index_in``."""
    import duckdb

    dtype = np.int32 if max(len(keys), len(table)) < 2**31 - 1 else np.int64
    con = duckdb.connect()
    try:
        con.register("k", pa.table({"key": keys, "i": np.arange(len(keys), dtype=dtype)}))
        con.register("t", pa.table({"key": table, "j": np.arange(len(table), dtype=dtype)}))
        found = con.sql("SELECT i, j FROM k JOIN t USING (key)").to_arrow_table()
    finally:
        con.close()
    out = np.full(len(keys), -1, np.int64)
    out[found.column("i").to_numpy()] = found.column("j").to_numpy()
    return out


def _count(values: pa.Array, of: pa.Array) -> NDArray[np.int64]:
    """How many times each of ``of`` occurs in ``values``."""
    idx = pc.index_in(values, of).to_numpy(zero_copy_only=False)
    idx = idx[~np.isnan(idx)].astype(np.int64) if idx.dtype.kind == "f" else idx
    return np.bincount(idx, minlength=len(of)).astype(np.int64)


def _type_codes(idents: pa.Array, types: tuple[str, ...]) -> NDArray[np.int32]:
    """The type of each identifier (``len(types)`` for a type not listed)."""
    codes = np.full(len(idents), len(types), np.int32)
    for i, t in enumerate(types):
        codes[pc.starts_with(idents, t + SEP).to_numpy(zero_copy_only=False)] = i
    return codes


def _junk_report(val: NDArray[Any], keep: NDArray[np.bool_], ids: Idents,
                 n_val: int) -> pa.Table:
    dropped = np.unique(val[~keep])
    held = np.bincount(val, minlength=n_val)[dropped]
    return pa.table({"ident": ids.values(dropped), "records": held})


def _stitch_subset(subset: NDArray[np.bool_], rec: NDArray[np.int64],
                   typ: NDArray[np.int32], val: NDArray[np.int64], n_val: int,
                   rules: Rules) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Labels and islands of the records in ``subset`` (-1 elsewhere)."""
    n = int(subset.sum())
    if n == len(subset):
        r, t, v = rec, typ, val  # every record: no renumbered copies
    else:
        local = np.cumsum(subset, dtype=rec.dtype) - 1
        m = subset[rec]
        r, t, v = local[rec[m]], typ[m], val[m]
    codes = {name: i for i, name in enumerate(rules.types)}
    srules = StitchRules(tuple(tuple(codes[x] for x in rnd) for rnd in rules.rounds),
                         {codes[k]: n_ for k, n_ in rules.limits.items()})
    lab, isl = stitch_islands(n, r, t, v, n_val, srules)
    labels = np.full(len(subset), -1, np.int64)
    island = np.full(len(subset), -1, np.int64)
    labels[subset], island[subset] = lab, isl
    return labels, island

def _records(rkeys: pa.Array, subset: NDArray[np.bool_], profile: pa.Array,
             island: NDArray[np.int64], prev_idx: NDArray[np.int64],
             previous: Previous) -> pa.Table:
    sub = pa.array(subset)
    base = int(pc.max(previous.records.column("island")).as_py() or 0) + 1 \
        if previous.records.num_rows else 0
    every = bool(subset.all())
    fresh = pa.table({"rkey": rkeys if every else rkeys.filter(sub), "profile": profile,
                      "island": pa.array((island if every else island[subset]) + base)},
                     schema=RECORDS)
    if every:
        return fresh
    # Records not re-stitched keep what they had (they are all in the previous build).
    kept = previous.records.take(pa.array(prev_idx[~subset]))
    return pa.concat_tables([kept.cast(RECORDS), fresh])
