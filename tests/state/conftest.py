"""Fixtures: one state store per backend (PostgreSQL in a fresh schema per test)."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterator

import pytest
from conn.state.contracts import StateStore

from tests.conftest import THOROUGH, unavailable

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=2):
            return True
    except Exception:
        return False


_PG = None


def pg_available() -> bool:
    global _PG
    if _PG is None:
        _PG = _pg_available()
    return _PG


def make_store(kind: str, tmp_path, schema: str | None = None) -> StateStore:
    if kind == "memory":
        from conn.state.backends.memory import MemoryStateStore

        return MemoryStateStore()
    if kind == "duckdb":
        from conn.state.backends.duckdb.store import DuckDBStateStore

        return DuckDBStateStore.open(None, tmp_path)
    from conn.state.backends.postgres import PostgresStateStore

    return PostgresStateStore.open(f"{PG_URL}?schema={schema}", tmp_path)


@pytest.fixture(params=["memory", "duckdb", pytest.param("postgres", marks=pytest.mark.services)])
def backend(request, tmp_path) -> Iterator[tuple[str, object]]:
    """``(kind, factory)``: the factory returns a store on the same state each call."""
    kind = request.param
    schema = f"conn_test_{uuid.uuid4().hex[:10]}"
    if kind == "postgres" and not pg_available():
        unavailable("PostgreSQL not reachable at 127.0.0.1:5432")
    stores: list[StateStore] = []
    memory: list[StateStore] = []

    def factory() -> StateStore:
        if kind == "memory":
            if not memory:
                memory.append(make_store(kind, tmp_path))
            return memory[0]
        s = make_store(kind, tmp_path, schema)
        stores.append(s)
        return s

    yield kind, factory
    for s in stores:
        s.close()
    if kind == "postgres":
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def pg_url() -> str | None:
    """The test server's URL, or None when it is not reachable."""
    return PG_URL if pg_available() else None


#: The planner's two paths: with the compiled kernels (``conn-speedups``) and without.
PLANNER_PATHS = ["compiled", "numpy"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "one_planner_path: run once, not once per planner path (the test sets "
        "CONN_SPEEDUPS itself, or plans nothing)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every state test runs on both planner paths (they must plan identically), unless
    it is marked ``one_planner_path``. In the fast loop (a bare pytest) each test runs on
    one of them, chosen by its name: both paths are still exercised, by different tests;
    ``make test`` runs every test on both."""
    if ("planner_path" in metafunc.fixturenames
            and metafunc.definition.get_closest_marker("one_planner_path") is None):
        paths = PLANNER_PATHS
        if not THOROUGH:
            paths = [PLANNER_PATHS[zlib.crc32(metafunc.definition.nodeid.encode()) % 2]]
        metafunc.parametrize("planner_path", paths, indirect=True)


@pytest.fixture(autouse=True)
def planner_path(request: pytest.FixtureRequest,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """The planner path of this run of the test (see :func:`pytest_generate_tests`);
    ``None`` for a test marked ``one_planner_path``, which is left as it is."""
    from conn.state.planner import kernels, row_hashes

    path = getattr(request, "param", None)
    if path is None:
        yield None
        return
    monkeypatch.setenv("CONN_SPEEDUPS", "1" if path == "compiled" else "0")
    kernels.reset()
    if path == "compiled":
        with row_hashes.connect() as con:
            if not kernels.enabled(con):
                pytest.skip("conn-speedups is not installed")
    yield path
    kernels.reset()


@pytest.fixture
def used(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Per open of a DuckDB-stored sync: whether the planner's state came from the
    sorted-state cache."""
    from conn.state.backends.duckdb.sorted_cache import SortedCache

    out: list[bool] = []
    real = SortedCache.read

    def spy(self: SortedCache, *args):  # type: ignore[no-untyped-def]
        state = real(self, *args)
        out.append(state is not None)
        return state

    monkeypatch.setattr(SortedCache, "read", spy)
    return out
