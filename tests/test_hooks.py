"""Every hook in :mod:`conn.hookspecs` called through a registry with an in-process plugin.

One test per hook, named ``test_<hook>`` (``tests/test_hook_docs.py`` checks that each
hook has one): registration hooks through the registry's ``register`` callables and the
runtime that uses what they register; observer hooks through
:func:`conn.runtime.runner.run_syncs` with the fakes of ``tests/fakes.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conn import hookimpl
from conn.config import load_project
from conn.config.profiles import MatcherSpec
from conn.destination import Capabilities, Destination, ObjectInfo, WriteRequest, WriteResult
from conn.plugins import Registry
from conn.profiles.matching import Matcher, matched_entries
from conn.runtime.report import RunInfo, RunReport, SyncReport
from conn.runtime.runner import RunOptions, run_syncs
from conn.source import Source, SourceState, StreamInfo

from tests import fakes

PROJECT = """\
version: 1
STATE
sources:
  mem: {type: SOURCE}
destinations:
  crm: {type: DEST, config: {batch_size: 2}}
syncs:
  people_to_crm:
    source: mem
    stream: people
    destination: crm
    object: contacts
    primary_key: id
    match_key: email
    mode: upsert
    mapping:
      email: email
      name: NAME
"""


def people(n: int = 5) -> None:
    fakes.TABLES["people"] = (pa.table({
        "id": pa.array(range(n), pa.int64()),
        "email": [f"p{i}@example.com" for i in range(n)],
        "name": [f"Person {i}" for i in range(n)],
    }), ("id",))


def sync(tmp_path: Path, registry: Registry, *, source: str = "memory",
         dest: str = "recorder", name: str = "name", state: str = "") -> RunReport:
    text = (PROJECT.replace("SOURCE", source).replace("DEST", dest)
            .replace("NAME", name).replace("STATE", state))
    (tmp_path / "conn.yml").write_text(text)
    project = load_project(tmp_path / "conn.yml", registry=registry)
    return run_syncs(project, list(project.syncs.values()), registry, RunOptions())


# --- registration hooks ----------------------------------------------------------------------


class TinySource(Source):
    """A source registered by the in-process plugin of these tests."""

    name = "tiny"

    def check(self) -> None:
        pass

    def discover(self) -> list[StreamInfo]:
        return [StreamInfo("people", fakes.TABLES["people"][0].schema, ("id",))]

    def read_batches(self, stream: StreamInfo, state: Any, batch_rows: int
                     ) -> Iterator[pa.RecordBatch | SourceState]:
        yield from fakes.TABLES["people"][0].to_batches(max_chunksize=batch_rows)


WRITTEN: list[dict[str, Any]] = []


class TinyDestination(Destination):
    """A destination registered by the in-process plugin of these tests."""

    name = "tiny_dest"
    config_schema = {"type": "object", "properties": {"batch_size": {"type": "integer"}}}

    def check(self) -> None:
        pass

    def objects(self) -> list[ObjectInfo]:
        return [ObjectInfo("contacts", fakes.CONTACT_FIELDS, ("email",),
                           Capabilities(batch_size=self.config.get("batch_size", 10)))]

    def write_batch(self, request: WriteRequest) -> WriteResult:
        WRITTEN.extend(request.to_pylist())
        return WriteResult.ok()


class FirstLetter(Matcher):
    """A matcher registered by the in-process plugin: records whose names start with
    the same letter score 0.95 (a DuckDB self-join)."""

    def pairs(self, records: pa.Table) -> pa.Table:
        import duckdb

        con = duckdb.connect()
        con.register("r", records)
        return con.sql("SELECT a.rkey AS record_a, b.rkey AS record_b, 0.95 AS score "
                       "FROM r a JOIN r b ON a.rkey < b.rkey "
                       "AND a.name[1] = b.name[1]").to_arrow_table()


class Plugin:
    """An in-process plugin implementing every hook, recording the observer calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.backend_opened: list[tuple[str | None, Any]] = []

    @hookimpl
    def register_sources(self, register: Callable[..., None]) -> None:
        register(TinySource)

    @hookimpl
    def register_destinations(self, register: Callable[..., None]) -> None:
        register(TinyDestination)

    @hookimpl
    def register_transforms(self, register: Callable[..., None]) -> None:
        def shout(array: pa.Array, **options: Any) -> pa.Array:
            return pc.utf8_upper(array)

        register("shout", shout)

    @hookimpl
    def register_matchers(self, register: Callable[..., None]) -> None:
        register("first_letter", FirstLetter)

    @hookimpl
    def register_state_backends(self, register: Callable[..., None]) -> None:
        def factory(url: str | None, project_dir: Any) -> Any:
            from conn.state.backends.memory import MemoryStateStore

            self.backend_opened.append((url, project_dir))
            return MemoryStateStore()

        register("test_memory", factory)

    @hookimpl
    def run_started(self, run: RunInfo) -> None:
        self.calls.append(("run_started", {"run": run}))

    @hookimpl
    def batch_done(self, run: RunInfo, sync: SyncReport, counts: dict[str, Any]) -> None:
        self.calls.append(("batch_done", {"run": run, "sync": sync, "counts": dict(counts)}))

    @hookimpl
    def run_finished(self, run: RunInfo, report: RunReport) -> None:
        self.calls.append(("run_finished", {"run": run, "report": report}))

    def of(self, hook: str) -> list[dict[str, Any]]:
        return [kw for name, kw in self.calls if name == hook]


@pytest.fixture
def plugin(registry: Registry) -> Plugin:
    WRITTEN.clear()
    people()
    p = Plugin()
    registry.add_module(p)
    return p


def test_register_sources(plugin: Plugin, registry: Registry, tmp_path: Path) -> None:
    assert registry.source_class("tiny") is TinySource
    assert "source:tiny" in registry.plugins[-1].provides
    report = sync(tmp_path, registry, source="tiny")
    assert report.ok and report.syncs[0].rows_read == 5


def test_register_destinations(plugin: Plugin, registry: Registry, tmp_path: Path) -> None:
    assert registry.destination_class("tiny_dest") is TinyDestination
    report = sync(tmp_path, registry, dest="tiny_dest")
    assert report.ok
    assert sorted(r["email"] for r in WRITTEN) == [f"p{i}@example.com" for i in range(5)]


def test_register_transforms(plugin: Plugin, registry: Registry, tmp_path: Path) -> None:
    fn = registry.transform("shout")
    assert fn(pa.array(["a", None])).to_pylist() == ["A", None]
    report = sync(tmp_path, registry, dest="tiny_dest",
                  name="{from: name, transforms: [shout]}")
    assert report.ok, report.syncs[0].error
    assert {r["name"] for r in WRITTEN} == {f"PERSON {i}" for i in range(5)}


def test_register_state_backends(plugin: Plugin, registry: Registry, tmp_path: Path) -> None:
    assert callable(registry.state_backend("test_memory"))
    report = sync(tmp_path, registry, state="state: {backend: test_memory}")
    assert report.ok
    assert plugin.backend_opened == [(None, tmp_path)]


def test_register_matchers(plugin: Plugin, registry: Registry) -> None:
    assert registry.matcher("first_letter") is FirstLetter
    rows = {"crm": pa.table({"rkey": pa.array([1, 2, 3], pa.uint64()),
                             "name": ["Ann", "Amy", "Bob"]})}
    spec = MatcherSpec("first_letter", 0.9, ("name",))
    entries = matched_entries(registry, (spec,), rows, "conn.yml", "profiles.people")
    assert entries.sort_by("rkey").to_pylist() == [
        {"rkey": 1, "ident": "~match0\x1f1:2"}, {"rkey": 2, "ident": "~match0\x1f1:2"}]
    # Above the threshold only: at 0.96 nothing is kept.
    strict = MatcherSpec("first_letter", 0.96, ("name",))
    assert matched_entries(registry, (strict,), rows, "conn.yml", "p").num_rows == 0


# --- observer hooks --------------------------------------------------------------------------


def test_run_started(plugin: Plugin, registry: Registry, tmp_path: Path) -> None:
    report = sync(tmp_path, registry)
    (call,) = plugin.of("run_started")
    assert call["run"] is report.run
    assert call["run"].syncs == ["people_to_crm"]
    assert plugin.calls[0][0] == "run_started"


def test_batch_done(plugin: Plugin, registry: Registry, tmp_path: Path) -> None:
    report = sync(tmp_path, registry)
    calls = plugin.of("batch_done")
    assert calls, "batch_done was never called"
    assert sum(c["counts"]["rows"] for c in calls) == 5
    assert all("seconds" in c["counts"] for c in calls)
    assert all(c["sync"] is report.syncs[0] for c in calls)


def test_run_finished(plugin: Plugin, registry: Registry, tmp_path: Path) -> None:
    report = sync(tmp_path, registry)
    (call,) = plugin.of("run_finished")
    assert call["report"] is report and call["run"] is report.run
    assert plugin.calls[-1][0] == "run_finished"
    assert call["report"].syncs[0].status == "ok"


def test_run_finished_called_when_a_sync_fails(plugin: Plugin, registry: Registry,
                                               tmp_path: Path) -> None:
    fakes.WRITE_HOOK.append(lambda req: (_ for _ in ()).throw(RuntimeError("boom")))
    report = sync(tmp_path, registry)
    assert report.syncs[0].status == "failed"
    assert len(plugin.of("run_finished")) == 1
