"""Build a :class:`SyncContext` without a project file or plugins: for tests, benchmarks
and plugin authors checking how a sync's consent and mapping settings behave."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from conn.config.model import ConnectorConfig, Project, SyncConfig
from conn.destination import ObjectInfo
from conn.source import StreamInfo
from conn.sync_context import SyncContext


def make_context(schema: pa.Schema, *, purposes: tuple[str, ...] = (),
                 sync_purposes: tuple[str, ...] | None = None,
                 consent: Mapping[str, Any] | None = None,
                 mapping: Any = None, policies: Mapping[str, Any] | None = None,
                 sync_policies: Mapping[str, Any] | None = None,
                 personal: Mapping[str, str] | None = None,
                 stream_personal: Mapping[str, str] | None = None,
                 fields: Mapping[str, Any] | None = None,
                 identifiers: tuple[str, ...] = (), object_personal: Mapping[str, str]
                 | None = None, match_key: str = "id",
                 consent_sources: Mapping[str, Mapping[str, Any]] | None = None,
                 events: Mapping[str, pa.Table] | None = None,
                 primary_key: tuple[str, ...] = ("id",), registry: Any = None,
                 sync_raw: Mapping[str, Any] | None = None) -> SyncContext:
    """A context for sync ``s`` from source ``src`` (stream ``rows``) to destination
    ``dest`` (object ``obj``)."""
    from conn.plugins import Registry

    dest = ConnectorConfig("dest", "test", {}, tuple(purposes), dict(policies or {}))
    sync = SyncConfig(name="s", source="src", destination="dest", object="obj", stream="rows",
                      primary_key=primary_key, match_key=match_key,
                      mapping=mapping if mapping is not None else {},
                      consent=dict(consent or {}), purposes=sync_purposes,
                      policies=dict(sync_policies or {}), personal=dict(personal or {}),
                      raw=dict(sync_raw or {}))
    project = Project(file=Path("conn.yml"),
                      sources={"src": ConnectorConfig("src", "test", {})},
                      destinations={"dest": dest}, syncs={"s": sync},
                      consent_sources={k: dict(v) for k, v in (consent_sources or {}).items()})
    obj = ObjectInfo("obj", fields or {"type": "object", "additionalProperties": True},
                     identifiers, personal=dict(object_personal or {}))
    stream = StreamInfo("rows", schema, primary_key, personal=dict(stream_personal or {}))
    tables = dict(events or {})

    def consent_events(name: str) -> pa.Table:
        src = project.consent_sources[name]
        return tables[src.get("stream", name)] if src.get("stream") in tables else tables[name]

    return SyncContext(project, sync, dest, obj, stream, registry or Registry(autoload=False),
                       consent_events, match_key)
