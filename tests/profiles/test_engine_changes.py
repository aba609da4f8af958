"""A build's merges and splits, against a plain model of docs/profiles.md ("Stable ids"):
for every record in both builds whose id changed, a pair (old id, new id); a merge when
the old id names no profile any more, else a split; the cause the smallest key of a new
record in the resulting profile. Whatever the ids' form (conn's own or any other string)
and however the entries arrive (one chunk or many, as DuckDB hands them over)."""

from __future__ import annotations

import pyarrow as pa
from conn.profiles.engine import Previous, build, empty_previous
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import examples
from tests.profiles.test_engine import RULES, by_key, entries, records_st


def model_changes(before: pa.Table, after: pa.Table) -> list[dict]:
    old, new = by_key(before), by_key(after)
    alive = set(new.values())
    pairs = {(old[k], p) for k, p in new.items() if k in old and old[k] != p}
    out = []
    for o, n in pairs:
        fresh = [k for k, p in new.items() if p == n and k not in old]
        out.append({"kind": "split" if o in alive else "merge", "old_id": o, "new_id": n,
                    "cause": f"record {min(fresh)}" if fresh else None})
    return sorted(out, key=lambda c: (c["kind"], c["old_id"], c["new_id"]))


def renamed(records: pa.Table) -> pa.Table:
    """The same profiles under ids conn would not make (read as strings, not numbers)."""
    names = pa.compute.binary_join_element_wise("legacy-", records.column("profile"), "")
    return records.set_column(1, "profile", names)


def chunked(table: pa.Table, size: int) -> pa.Table:
    return pa.Table.from_batches(table.to_batches(max_chunksize=size), table.schema)


@settings(max_examples=examples(60), deadline=None)
@given(before=records_st, added=records_st, drop=st.sets(st.integers(0, 29), max_size=5),
       foreign=st.booleans(), size=st.integers(1, 7))
def test_changes_follow_the_model(before: dict, added: dict, drop: set[int],
                                  foreign: bool, size: int) -> None:
    first = build(entries(before), RULES, empty_previous())
    prev_records = renamed(first.records) if foreign else first.records
    after = {k: v for i, (k, v) in enumerate(sorted(before.items())) if i not in drop}
    after.update({k + 2**41: v for k, v in added.items()})
    whole = entries(after)
    for full in (True, False):
        for prev in (Previous(prev_records, entries(before)),
                     Previous(prev_records, entries(before), first.junk)):
            out = build(whole, RULES, prev, full=full)
            assert out.changes.to_pylist() == model_changes(prev_records, out.records)
            # The same entries in chunks: the same records, ids and changes.
            again = build(chunked(whole, size), RULES, prev, full=full)
            assert by_key(again.records) == by_key(out.records)
            assert again.changes.to_pylist() == out.changes.to_pylist()
            assert again.junk.to_pylist() == out.junk.to_pylist()
