"""conn.runtime.merged on a real (in-memory) sync state, without a CLI: which absorbed
records are merged and which are deleted (docs/profiles.md, "Merges reach
destinations"), and a pair whose two records hold one match value."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pyarrow as pa
from conn.destination import Capabilities, Destination, ObjectInfo, WriteRequest, WriteResult
from conn.runtime import merged
from conn.runtime.lane import DeliveryLane
from conn.runtime.report import SyncReport
from conn.state.backends.memory import MemoryStateStore

OBJ = ObjectInfo("people", {"type": "object", "properties": {"email": {"type": "string"}}},
                 ("email",), Capabilities(modes=frozenset({"upsert"}), merges="test"))


class Merger(Destination):
    """Records the merge pairs it is asked for."""

    name = "merger"
    config_schema: dict[str, Any] = {"type": "object"}

    def __init__(self) -> None:
        super().__init__({}, instance="m")
        self.pairs: list[tuple[str, str]] = []

    def check(self) -> None:
        """Nothing to reach."""

    def objects(self) -> list[ObjectInfo]:
        return [OBJ]

    def write_batch(self, request: WriteRequest) -> WriteResult:
        raise AssertionError("only merges are expected")

    def merge_batch(self, request: WriteRequest) -> WriteResult:
        a, s = request.merge_pairs()
        self.pairs += list(zip(a.to_pylist(), s.to_pylist(), strict=True))
        return WriteResult()


def delivered(st: Any, keys: list[str], emails: list[str]) -> None:
    st.commit(pa.array(keys), pa.array([1] * len(keys), pa.uint64()), pa.array(emails),
              pa.array([True] * len(keys)), [])


def test_merges_only_survivors_planned_and_skips_one_record_pairs() -> None:
    store = MemoryStateStore()
    with store.open_sync("s", "r1") as st:
        delivered(st, ["a", "b", "c", "d", "e"],
                  ["a@x", "b@x", "shared@x", "shared@x", "e@x"])
    dest = Merger()
    # a -> b (b planned: merged), c -> d (one e-mail: nothing to send), e -> gone
    # (survivor withheld this run: not planned, so e's record is deleted instead).
    pairs = pa.table({"old_id": ["a", "c", "e"], "new_id": ["b", "d", "z"]})
    with store.open_sync("s", "r2") as inner:
        st = merged.MergeWatch(inner, pa.array(["a", "c", "e"]), pairs, True, upsert=True)
        batch = pa.RecordBatch.from_pydict({"email": ["b@x", "shared@x"]})
        st.plan(pa.array(["b", "d"]), batch)
        keep = merged.deleting(st)
        assert keep is not None
        left = [keep(g) for g in st.deletions(100)]
        deleted = sorted(k for g in left if g is not None for k in g.keys.to_pylist())
        assert deleted == ["e"]
        report = SyncReport(name="s", status="running")
        runner = SimpleNamespace(report=report, options=SimpleNamespace(dry_run=False),
                                 sync=SimpleNamespace(name="s", destination="m"),
                                 _writers=None, _batch_done=lambda *a: None)
        p = SimpleNamespace(obj=OBJ, dest=dest, match_key="email")
        with DeliveryLane() as lane:
            merged.send(runner, p, st, lane)  # type: ignore[arg-type]
        assert dest.pairs == [("a@x", "b@x")] and report.merged == 2
    with store.open_sync("s", "r3") as st:
        assert sorted(g for d in st.deletions(100) for g in d.keys.to_pylist()) == \
            ["b", "d", "e"]
