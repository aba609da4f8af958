"""A build keeps ids: an incremental build equals a full one, a full rebuild of the same
data keeps every id, merges and splits are recorded (docs/profiles.md, "Stable ids")."""

from __future__ import annotations

import pyarrow as pa
from conn.profiles.engine import Previous, Rules, build, build_changes, empty_previous
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.conftest import examples

RULES = Rules(("customer_id", "email", "device_id"),
              (("customer_id",), ("email",), ("device_id",)),
              {"customer_id": 1, "email": 2}, {"email": 5, "device_id": 5})
TYPES = RULES.types


def entries(records: dict[int, set[tuple[int, int]]]) -> pa.Table:
    rows = [(k, f"{TYPES[t]}\x1f{v}") for k, ids in records.items() for t, v in sorted(ids)]
    return pa.table({"rkey": pa.array([r for r, _ in rows], pa.uint64()),
                     "ident": pa.array([i for _, i in rows], pa.string())})


def by_key(table: pa.Table) -> dict[int, str]:
    return dict(zip(table.column("rkey").to_pylist(), table.column("profile").to_pylist(),
                    strict=True))


def groups(table: pa.Table) -> set[frozenset[int]]:
    out: dict[str, set[int]] = {}
    for k, p in by_key(table).items():
        out.setdefault(p, set()).add(k)
    return {frozenset(g) for g in out.values()}


records_st = st.dictionaries(
    st.integers(0, 2**40),
    st.sets(st.tuples(st.integers(0, 2), st.integers(0, 8)), min_size=1, max_size=3),
    min_size=1, max_size=30)


@settings(max_examples=examples(60))
@given(before=records_st, added=records_st, drop=st.sets(st.integers(0, 29), max_size=5))
# New records push a shared e-mail over its junk threshold (5 records): the old profile
# holding it splits. Without the previous junk, a build re-stitched only the islands of
# values left after junk, so it kept the three old records together.
@example(before={0: {(1, 0)}, 1: {(1, 0)}, 2: {(1, 0)}},
         added={0: {(1, 0)}, 1: {(1, 0)}, 2: {(1, 0)}}, drop=set())
def test_incremental_equals_full_and_ids_hold(before: dict, added: dict,
                                              drop: set[int]) -> None:
    first = build(entries(before), RULES, empty_previous())
    prev = Previous(first.records, entries(before))
    # A full rebuild of the same data keeps every id.
    again = build(entries(before), RULES, prev, full=True)
    assert by_key(again.records) == by_key(first.records)
    assert again.changes.num_rows == 0
    # Some records vanish, some arrive: incremental and full agree on profiles and ids.
    keys = sorted(before)
    after = {k: v for i, (k, v) in enumerate(sorted(before.items())) if i not in drop}
    after.update({k + 2**41: v for k, v in added.items()})
    full = build(entries(after), RULES, prev, full=True)
    # Both incremental paths: from the previous entries alone, and with the previous
    # junk (which reads only the touched islands' entries).
    for inc in (build(entries(after), RULES, prev),
                build(entries(after), RULES, Previous(first.records, entries(before),
                                                      first.junk))):
        assert by_key(inc.records) == by_key(full.records)
        assert inc.changes.to_pylist() == full.changes.to_pylist()
        assert sorted(inc.junk.column("ident").to_pylist()) == \
            sorted(full.junk.column("ident").to_pylist())
    assert set(by_key(inc.records)) == set(after)
    # Unchanged profiles (same records as before) keep their ids.
    old_groups = {frozenset(g): p for p, g in _ids(first.records).items()}
    for p, g in _ids(full.records).items():
        if frozenset(g) in old_groups:
            assert old_groups[frozenset(g)] == p
    assert keys == sorted(before)


def _ids(table: pa.Table) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for k, p in by_key(table).items():
        out.setdefault(p, set()).add(k)
    return out


def test_merge_and_split_are_recorded() -> None:
    a = {1: {(1, 1)}, 2: {(1, 2)}}  # two people, e-mails 1 and 2
    first = build(entries(a), RULES, empty_previous())
    pa_, pb = by_key(first.records)[1], by_key(first.records)[2]
    assert pa_ != pb
    b = {**a, 3: {(1, 1), (1, 2)}}  # a record with both e-mails joins them
    second = build(entries(b), RULES, Previous(first.records, entries(a)))
    assert len(groups(second.records)) == 1
    (change,) = second.changes.to_pylist()
    assert change["kind"] == "merge" and {change["old_id"], change["new_id"]} == {pa_, pb}
    assert change["cause"] == "record 3"
    # The joining record goes away: the profile splits again, one part keeps the id.
    third = build(entries(a), RULES, Previous(second.records, entries(b)))
    (split,) = third.changes.to_pylist()
    assert split["kind"] == "split" and split["old_id"] == change["new_id"]
    assert len(groups(third.records)) == 2


def test_only_touched_islands_are_restitched() -> None:
    people = {k: {(1, k)} for k in range(100)}
    first = build(entries(people), RULES, empty_previous())
    more = {**people, 1000: {(1, 5), (2, 77)}}
    # Without the previous junk every record is stitched again (docs of Previous).
    for prev, restitched in ((Previous(first.records, entries(people)), 101),
                             (Previous(first.records, entries(people), first.junk), 2)):
        inc = build(entries(more), RULES, prev)
        assert inc.restitched == restitched  # with junk: the new record and person 5
        assert by_key(inc.records)[1000] == by_key(first.records)[5]
        assert len(by_key(inc.records)) == 101


@settings(max_examples=examples(60), deadline=None)
@given(before=records_st, added=records_st, drop=st.sets(st.integers(0, 29), max_size=5),
       resent=st.sets(st.integers(0, 29), max_size=5))
def test_changes_alone_equal_a_full_build(before: dict, added: dict, drop: set[int],
                                          resent: set[int]) -> None:
    """``build_changes`` given only the new records' entries and the vanished keys (a
    caller that knows what changed reads nothing else): its re-stitched records, put
    in place of the dropped ones, are a full build's profiles, ids and changes."""
    first = build(entries(before), RULES, empty_previous())
    prev = Previous(first.records, entries(before), first.junk)
    ordered = sorted(before.items())
    after = {k: v for i, (k, v) in enumerate(ordered) if i not in drop}
    new = {k + 2**41: v for k, v in added.items()}
    after.update(new)
    vanished = [k for i, (k, _) in enumerate(ordered) if i in drop]
    # Records still there sent again among the new ones are left as they are.
    again = {k: v for i, (k, v) in enumerate(ordered) if i in resent and i not in drop}
    out = build_changes(entries({**new, **again}), pa.array(vanished, pa.uint64()), RULES,
                        prev)
    full = build(entries(after), RULES, prev, full=True)
    assert out.delta is not None
    dropped = set(out.delta.dropped.to_pylist())
    assert set(vanished) <= dropped
    merged = {k: p for k, p in by_key(first.records).items() if k not in dropped}
    assert not set(merged) & set(by_key(out.records))
    merged.update(by_key(out.records))
    assert merged == by_key(full.records)
    assert out.changes.to_pylist() == full.changes.to_pylist()
    assert sorted(out.junk.column("ident").to_pylist()) == \
        sorted(full.junk.column("ident").to_pylist())
    assert out.delta.new_entries.to_pylist() == [
        k in new for k in entries({**new, **again}).column("rkey").to_pylist()]
