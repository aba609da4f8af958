"""Stitching equals a plain union-find with the same rules (docs/profiles.md,
"Stitching"), over random identifier graphs.

The reference below is written from the docs, record by record, with dictionaries: junk
values (held by more records than the type's threshold) are dropped; rounds run in
order; each round unions the clusters sharing a value of its types, and a joined group
that would hold more distinct values of a limited type than allowed falls back to the
clusters it was made of."""

from __future__ import annotations

import numpy as np
from conn.profiles.stitch import StitchRules, drop_junk, islands, stitch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import examples


class UnionFind:
    def __init__(self, items: list[int]) -> None:
        self.parent = {i: i for i in items}

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def reference(records: list[set[tuple[int, int]]], rounds: list[list[int]],
              limits: dict[int, int], max_records: dict[int, int]) -> list[int]:
    """The cluster of each record: records are sets of (type, value)."""
    holders: dict[tuple[int, int], set[int]] = {}
    for r, ids in enumerate(records):
        for ident in ids:
            holders.setdefault(ident, set()).add(r)
    junk = {i for i, rs in holders.items() if max_records.get(i[0], 0) and
            len(rs) > max_records[i[0]]}
    records = [{i for i in ids if i not in junk} for ids in records]
    cluster = list(range(len(records)))  # cluster id of each record
    for types in rounds:
        uf = UnionFind(sorted(set(cluster)))
        first_holder: dict[tuple[int, int], int] = {}
        for r, ids in enumerate(records):
            for ident in ids:
                if ident[0] in types:
                    if ident in first_holder:
                        uf.union(cluster[first_holder[ident]], cluster[r])
                    else:
                        first_holder[ident] = r
        joined = [uf.find(c) for c in cluster]
        values: dict[int, set[tuple[int, int]]] = {}
        for r, ids in enumerate(records):
            values.setdefault(joined[r], set()).update(ids)
        too_many = {g for g, ids in values.items()
                    if any(sum(1 for i in ids if i[0] == t) > n for t, n in limits.items())}
        cluster = [(("kept", cluster[r]) if joined[r] in too_many else ("new", joined[r]))
                   for r in range(len(records))]
        names = {c: k for k, c in enumerate(sorted(set(cluster)))}
        cluster = [names[c] for c in cluster]
    return cluster


def partition(labels: list[int] | np.ndarray) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for r, c in enumerate(labels):
        groups.setdefault(int(c), set()).add(r)
    return {frozenset(g) for g in groups.values()}


def encode(records: list[set[tuple[int, int]]]) -> tuple[np.ndarray, ...]:
    codes: dict[tuple[int, int], int] = {}
    rec, typ, val = [], [], []
    for r, ids in enumerate(records):
        for ident in sorted(ids):
            rec.append(r)
            typ.append(ident[0])
            val.append(codes.setdefault(ident, len(codes)))
    return (np.array(rec, np.int64), np.array(typ, np.int32), np.array(val, np.int64),
            len(codes))


def encode_ids(records: list[set[tuple[int, int]]]) -> tuple[list, list[int]]:
    """The identifiers in the order :func:`encode` numbers them, and their codes."""
    codes: dict[tuple[int, int], int] = {}
    for ids in records:
        for ident in sorted(ids):
            codes.setdefault(ident, len(codes))
    return list(codes), list(codes.values())


graphs = st.lists(
    st.sets(st.tuples(st.integers(0, 3), st.integers(0, 6)), min_size=1, max_size=4),
    min_size=1, max_size=40)


@settings(max_examples=examples(300))
@given(records=graphs,
       order=st.permutations([0, 1, 2, 3]),
       grouped=st.booleans(),
       omit=st.booleans(),
       limits=st.dictionaries(st.integers(0, 3), st.integers(1, 3), max_size=3),
       max_records=st.dictionaries(st.integers(0, 3), st.integers(1, 6), max_size=2))
def test_stitch_equals_reference_union_find(records: list[set[tuple[int, int]]],
                                            order: list[int], grouped: bool,
                                            omit: bool, limits: dict[int, int],
                                            max_records: dict[int, int]) -> None:
    rounds = [order[:2], order[2:]] if grouped else [[t] for t in order]
    if omit:  # a type in no round: its values join nothing
        rounds = [[t for t in r if t != order[-1]] for r in rounds]
    rec, typ, val, n_val = encode(records)
    caps = np.zeros(4, np.int64)
    for t, n in max_records.items():
        caps[t] = n
    keep = drop_junk(rec, typ, val, n_val, caps)
    got = stitch(len(records), rec[keep], typ[keep], val[keep], n_val,
                 StitchRules(tuple(tuple(r) for r in rounds), limits))
    assert partition(got) == partition(reference(records, rounds, limits, max_records))
    # Whatever was joined respects every limit (a lone record is never split).
    kept_ids = {(int(t), int(v)) for t, v in zip(typ[keep], val[keep], strict=True)}
    values = {v: ident for ident, v in zip(*encode_ids(records), strict=True)}
    for group in partition(got):
        if len(group) > 1:
            held = {values[v] for (_, v) in kept_ids
                    if any(values[v] in records[r] for r in group)}
            for t, n in limits.items():
                assert sum(1 for i in held if i[0] == t) <= n

def test_planted_junk_value_joins_nobody() -> None:
    # 1,000 people, each with their own e-mail and device, all sharing test@test.com.
    records = [{(0, p), (0, 10_000), (1, p)} for p in range(1000)]
    rec, typ, val, n_val = encode(records)
    keep = drop_junk(rec, typ, val, n_val, np.array([100, 0], np.int64))
    got = stitch(1000, rec[keep], typ[keep], val[keep], n_val,
                 StitchRules(((0,), (1,)), {0: 3}))
    assert len(set(got.tolist())) == 1000


def test_limit_keeps_two_customers_sharing_an_email_apart() -> None:
    # type 0 customer_id (limit 1), type 1 e-mail: two customers share a family e-mail;
    # a third record only has the e-mail.
    records = [{(0, 1), (1, 7)}, {(0, 2), (1, 7)}, {(1, 7), (2, 5)}]
    rec, typ, val, n_val = encode(records)
    got = stitch(3, rec, typ, val, n_val, StitchRules(((0,), (1,), (2,)), {0: 1}))
    assert partition(got) == {frozenset({0}), frozenset({1}), frozenset({2})}


def test_islands_ignore_limits() -> None:
    records = [{(0, 1), (1, 7)}, {(0, 2), (1, 7)}, {(2, 5)}]
    rec, _, val, n_val = encode(records)
    assert partition(islands(3, rec, val, n_val)) == {frozenset({0, 1}), frozenset({2})}


def test_a_type_in_no_round_joins_nobody() -> None:
    # Type 3 is declared by no round: two records sharing only its value stay apart, and
    # a third joined through e-mail (type 1) still joins (no limit is broken anywhere).
    records = [{(3, 0)}, {(3, 0), (1, 4)}, {(1, 4)}]
    rec, typ, val, n_val = encode(records)
    got = stitch(3, rec, typ, val, n_val, StitchRules(((0,), (1,), (2,)), {0: 1}))
    assert partition(got) == {frozenset({0}), frozenset({1, 2})}
