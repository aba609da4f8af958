"""Run whole syncs in a test, as ``conn sync`` runs them, without copying core internals.

:class:`SyncHarness` writes a project file from what a test declares, loads and validates
it as the CLI does (connector configs against their plugins' schemas), then runs the
sync through the real pipeline: source, consent gate, mapper, planner, destination,
acknowledgements and state. Its state store is an in-memory one that lives as long as
the harness, so a second sync sees what the first delivered: an unchanged row is not
sent again, and in mirror mode a row gone from the source is deleted.

.. code-block:: python

    from conn.testing.sync import SyncHarness

    def test_mirror_deletes_what_left_the_source(tmp_path, fault_server):
        with SyncHarness(tmp_path) as h:
            h.destination("crm", AcmecrmDestination, {"base_url": fault_server.url})
            h.stream("people", [{"id": 1, "email": "ana@example.com"},
                                {"id": 2, "email": "bo@example.com"}], primary_key="id")
            first = h.sync("crm", "people", object="contacts", match_key="id",
                           mode="mirror", mapping={"id": "id", "email": "email"})
            assert (first.status, first.inserted) == ("ok", 2)
            h.stream("people", [{"id": 1, "email": "ana@example.com"}], primary_key="id")
            second = h.sync("crm", "people", object="contacts", match_key="id",
                            mode="mirror", mapping={"id": "id", "email": "email"})
            assert (second.deleted, second.unchanged) == (1, 1)

Streams declared with :meth:`SyncHarness.stream` are served by
:class:`conn.testing.memory.MemorySource` (source name ``memory``); other sources and
destinations are given as classes (or as installed ``type`` names).
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from conn.hookspecs import hookimpl
from conn.plugins import PluginInfo, Registry
from conn.runtime.report import RunReport, SyncReport
from conn.testing.harness import to_batch
from conn.testing.memory import (
    MemorySource,
    MemoryStream,
    add_dataset,
    append_changes,
    drop_dataset,
    set_stream,
)

if TYPE_CHECKING:
    from conn.destination import Destination
    from conn.plugin_base import Connector
    from conn.source import Source

#: The name of the source serving :meth:`SyncHarness.stream` tables.
MEMORY = "memory"


def _plugin(kind: str, cls: type) -> types.ModuleType:
    """A plugin module registering ``cls`` (kind ``sources`` or ``destinations``)."""
    module = types.ModuleType(f"conn_testing_{kind}_{cls.__name__}")

    @hookimpl
    def register(register: Any) -> None:
        register(cls)

    setattr(module, f"register_{kind}", register)
    return module


class SyncHarness:
    """Whole syncs in a test (see the module docstring). ``folder`` holds the project
    (``conn.yml`` is rewritten for each sync); ``registry`` defaults to one that knows
    the classes given here and loads installed plugins for types given by name."""

    def __init__(self, folder: str | Path, *, registry: Registry | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.registry = registry or Registry()
        self.sources: dict[str, dict[str, Any]] = {}
        self.destinations: dict[str, dict[str, Any]] = {}
        self.consent_sources: dict[str, dict[str, Any]] = {}
        #: Other top-level sections of the project file (``traits``, ``triggers``...).
        self.sections: dict[str, Any] = {}
        self._registered: set[type[Connector]] = set()
        self._dataset = add_dataset()
        self.source(MEMORY, MemorySource, {"dataset": self._dataset})
        self._store: Any = None
        #: The report of every run so far, oldest first.
        self.runs: list[RunReport] = []

    # -- declaring -------------------------------------------------------------------------

    def _type(self, kind: str, plugin: type[Connector] | str) -> str:
        if isinstance(plugin, str):
            return plugin
        if plugin not in self._registered:
            self.registry.add_module(_plugin(kind, plugin), PluginInfo(
                plugin.__name__, kind, plugin.__module__, "conn-testing"))
            self._registered.add(plugin)
        return str(plugin.name)

    def source(self, name: str, plugin: type[Source] | str, config: Mapping[str, Any] | None = None,
               **settings: Any) -> SyncHarness:
        """Declare source ``name``: a :class:`~conn.source.Source` class (or an installed
        type name) with its ``config``; ``settings`` go beside ``type`` and ``config``."""
        self.sources[name] = {"type": self._type("sources", plugin),
                              "config": dict(config or {}), **settings}
        return self

    def destination(self, name: str, plugin: type[Destination] | str,
                    config: Mapping[str, Any] | None = None, *,
                    purposes: Sequence[str] = (), **settings: Any) -> SyncHarness:
        """Declare destination ``name`` (a :class:`~conn.destination.Destination` class
        or an installed type name) with its ``config`` and the ``purposes`` it serves
        (none by default: the consent gate then passes every row); ``settings`` go beside
        ``type`` and ``config``."""
        entry: dict[str, Any] = {"type": self._type("destinations", plugin),
                                 "config": dict(config or {}), **settings}
        if purposes:
            entry["purposes"] = list(purposes)
        self.destinations[name] = entry
        return self

    def stream(self, name: str, rows: pa.Table | pa.RecordBatch | Iterable[Mapping[str, Any]],
               *, primary_key: str | Sequence[str], cursor: str | None = None,
               schema: pa.Schema | None = None) -> SyncHarness:
        """Set stream ``name`` of the ``memory`` source to ``rows`` (a table, a batch or
        dicts; ``schema`` types the dicts). Calling it again replaces the rows: the next
        sync reads the stream as it is then."""
        if isinstance(rows, pa.Table):
            table = rows
        else:
            table = pa.Table.from_batches([to_batch(rows, schema)])
        key = (primary_key,) if isinstance(primary_key, str) else tuple(primary_key)
        set_stream(self._dataset, name, MemoryStream(table, key, cursor))
        return self

    def changes(self, name: str, rows: Iterable[Mapping[str, Any]], operations: Sequence[str],
                ) -> int:
        """Append changes to the change feed of memory stream ``name`` (declared with
        :meth:`stream`, whose schema types them): one operation (``insert``, ``update``,
        ``delete``) per row. Returns the feed's position after them."""
        from conn.streaming import OPERATION

        stream = next(s for s in MemorySource({"dataset": self._dataset}).discover()
                      if s.name == name)
        batch = to_batch(rows, stream.schema)
        batch = batch.append_column(OPERATION, pa.array(list(operations), pa.string()))
        return append_changes(self._dataset, name, batch)

    # -- running ---------------------------------------------------------------------------

    def _write_project(self, destination: str, stream: str | None, object: str,
                       source: str, name: str | None, settings: Mapping[str, Any]) -> Any:
        import yaml

        from conn.config import load_project

        spec: dict[str, Any] = {"source": source, "destination": destination,
                                "object": object, **settings}
        if stream is not None:
            spec["stream"] = stream
        name = name or f"{stream or 'query'}_to_{destination}"
        path = self.folder / "conn.yml"
        path.write_text(yaml.safe_dump(self.project({name: spec}), sort_keys=False),
                        encoding="utf-8")
        project = load_project(path, registry=self.registry)
        if self._store is None:
            self._store = self.registry.state_backend("memory")(None, self.folder)
        return project, name

    def follow(self, destination: str, stream: str, *, object: str, source: str = MEMORY,
               name: str | None = None, **settings: Any) -> Follower:
        """Start following ``stream`` (a streaming sync, as ``conn sync --follow``) on a
        thread; :meth:`Follower.stop` ends it and returns its report."""
        from conn.runtime.streaming import follow

        project, name = self._write_project(destination, stream, object, source, name,
                                            settings)
        return Follower(lambda stop, on_batch: follow(
            project, name, stop, on_batch, registry=self.registry, store=self._store))


    def project(self, syncs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """The project file's content for ``syncs``."""
        doc: dict[str, Any] = {"version": 1, "sources": self.sources,
                               "destinations": self.destinations, "syncs": dict(syncs)}
        if self.consent_sources:
            doc["consent_sources"] = self.consent_sources
        return {**doc, **self.sections}

    def sync(self, destination: str, stream: str | None = None, *, object: str,
             source: str = MEMORY, name: str | None = None, dry_run: bool = False,
             full_resync: bool = False, batch_rows: int | None = None,
             **settings: Any) -> SyncReport:
        """Run one sync of ``stream`` of ``source`` into ``object`` of ``destination``
        and return its report. ``settings`` are the sync's other keys as in conn.yml
        (``match_key``, ``mode``, ``mapping``, ``primary_key``, ``consent``,
        ``policies``, ``query``...); the primary key defaults to the memory stream's."""
        from conn.runtime.runner import RunOptions, run_syncs

        project, name = self._write_project(destination, stream, object, source, name,
                                            settings)
        report = run_syncs(project, [project.syncs[name]], self.registry,
                           RunOptions(dry_run=dry_run, full_resync=full_resync,
                                      batch_rows=batch_rows), store=self._store)
        self.runs.append(report)
        return report.syncs[0]

    def close(self) -> None:
        """Close the state store and forget the memory streams."""
        if self._store is not None:
            self._store.close()
            self._store = None
        drop_dataset(self._dataset)

    def __enter__(self) -> SyncHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Follower:
    """A streaming sync running on a thread (see :meth:`SyncHarness.follow`).
    :attr:`batches` lists what ``on_batch`` was told of each committed micro-batch."""

    def __init__(self, run: Any) -> None:
        self.stop_event = threading.Event()
        self.batches: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self.report: SyncReport | None = None
        self.error: BaseException | None = None

        def on_batch(report: SyncReport, info: dict[str, Any]) -> None:
            with self._changed:
                self.batches.append(info)
                self._changed.notify_all()

        def main() -> None:
            try:
                self.report = run(self.stop_event, on_batch)
            except BaseException as exc:  # handed to stop()
                self.error = exc
            with self._changed:
                self._changed.notify_all()

        self._thread = threading.Thread(target=main, name="conn-follow", daemon=True)
        self._thread.start()

    def wait_rows(self, rows: int, timeout: float = 10.0) -> bool:
        """Wait until micro-batches holding ``rows`` changes in all were committed (or
        the run ended); whether they were."""
        end = time.monotonic() + timeout
        with self._changed:
            while sum(b["rows"] for b in self.batches) < rows and self._thread.is_alive():
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return sum(b["rows"] for b in self.batches) >= rows

    def stop(self, timeout: float = 30.0) -> SyncReport:
        """Ask the run to stop, wait for it, and return its report (re-raise its error)."""
        self.stop_event.set()
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        assert self.report is not None, "the streaming run did not end in time"
        return self.report
