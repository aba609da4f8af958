import pyarrow as pa
import pytest
from conn.state.duckdb_store import DuckDBStateStore
from conn.state.memory import MemoryStateStore

@pytest.mark.parametrize("kind", ["memory", "duckdb"])
def test_smoke(kind, tmp_path):
    s = MemoryStateStore() if kind == "memory" else DuckDBStateStore.open(None, tmp_path)
    keys = pa.array([str(i) for i in range(10)])
    b = pa.record_batch({"v": list(range(10))})
    with s.open_sync("x", "r1") as st:
        p = st.plan(keys, b)
        assert len(p.inserts) == 10
        st.commit(keys, p.hashes, keys, pa.array([True]*10), [])
    with s.open_sync("x", "r2") as st:
        p = st.plan(keys, b)
        assert len(p.inserts) == 0 and len(p.updates) == 0 and p.unchanged == 10
        assert list(st.deletions(3)) == []
    s.record_run("x", "r2", {"status": "ok", "inserted": 3})
    print(s.runs())
