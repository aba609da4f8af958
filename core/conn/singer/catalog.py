"""Reading and editing Singer catalogs: a catalog entry's key properties, replication key
and method, stream and property selection, and Meltano-style metadata overrides. Used by
the ``singer`` source, which runs a tap from its catalog.

The catalog a conn source announces as a tap (``conn singer tap --discover``) is built in
:mod:`conn.singer.tap`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any


def stream_key_properties(entry: Mapping[str, Any]) -> list[str]:
    """Primary key of a catalog entry (``key_properties`` or ``table-key-properties``)."""
    keys = entry.get("key_properties")
    if keys:
        return list(keys)
    for md in entry.get("metadata") or ():
        if md.get("breadcrumb") == []:
            keys = (md.get("metadata") or {}).get("table-key-properties")
            if keys:
                return list(keys)
    return []


def stream_replication_key(entry: Mapping[str, Any]) -> str | None:
    """Replication key of a catalog entry, if any."""
    if entry.get("replication_key"):
        return str(entry["replication_key"])
    for md in entry.get("metadata") or ():
        if md.get("breadcrumb") == []:
            rk = (md.get("metadata") or {}).get("replication-key")
            if rk:
                return str(rk)
    return None


def metadata_rules(overrides: Mapping[str, Any]) -> list[tuple[str, list[str], str, Any]]:
    """Meltano-style metadata overrides as rules ``(stream pattern, breadcrumb, key,
    value)``: ``{"<tap_stream_id or glob>": {"replication-method": "INCREMENTAL",
    "<property>": {"selected": false}, "properties": {"<property>": {...}}}}``. A key
    holding an object names a property (nested objects: sub-properties); any other key is
    a metadata key of the stream (breadcrumb ``[]``) or of that property."""
    rules: list[tuple[str, list[str], str, Any]] = []

    def walk(pattern: str, crumb: list[str], node: Mapping[str, Any]) -> None:
        for key, value in node.items():
            if key == "properties" and isinstance(value, Mapping):
                walk(pattern, crumb, {k: v for k, v in value.items()
                                      if isinstance(v, Mapping)})
            elif isinstance(value, Mapping):
                walk(pattern, [*crumb, "properties", str(key)], value)
            else:
                rules.append((pattern, crumb, str(key), value))

    for pattern, node in overrides.items():
        if isinstance(node, Mapping):
            walk(str(pattern), [], node)
    return rules


def apply_metadata(catalog: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``catalog`` with Meltano-style metadata overrides applied (see
    :func:`metadata_rules`), in order, as Meltano's ``metadata`` extra does: streams match
    by ``tap_stream_id`` (``fnmatch`` patterns, ``*`` for all); a stream-level key is also
    set on the entry itself with dashes as underscores (``replication_method``), which
    legacy taps read; a missing metadata entry is created. Lets legacy taps (e.g.
    pipelinewise-tap-mysql, which needs ``selected`` and ``replication-method``) run from
    a discovered catalog."""
    rules = metadata_rules(overrides)
    out = copy.deepcopy(dict(catalog))
    for entry in out.get("streams") or ():
        sid = str(entry.get("tap_stream_id") or entry.get("stream") or "")
        mine = [r for r in rules if fnmatchcase(sid, r[0])]
        if not mine:
            continue
        metadata = entry.setdefault("metadata", [])
        for _, crumb, key, value in mine:
            md = next((m for m in metadata if m.get("breadcrumb") == crumb), None)
            if md is None:
                md = {"breadcrumb": crumb, "metadata": {}}
                metadata.append(md)
            md.setdefault("metadata", {})[key] = value
            if not crumb:
                entry[key.replace("-", "_")] = value
                if key in ("table-key-properties", "view-key-properties"):
                    entry["key_properties"] = list(value or ())
    return out


def stream_selected(entry: Mapping[str, Any]) -> bool | None:
    """The stream-level ``selected`` of a catalog entry (metadata first), or None."""
    for md in entry.get("metadata") or ():
        if md.get("breadcrumb") == [] and "selected" in (md.get("metadata") or {}):
            return bool(md["metadata"]["selected"])
    return bool(entry["selected"]) if "selected" in entry else None


def deselected_properties(entry: Mapping[str, Any]) -> set[str]:
    """Top-level properties the catalog leaves out (``selected: false`` or ``inclusion:
    unsupported``, never ``automatic`` ones)."""
    out = set()
    for md in entry.get("metadata") or ():
        crumb = md.get("breadcrumb") or []
        m = md.get("metadata") or {}
        if len(crumb) == 2 and crumb[0] == "properties" and m.get("inclusion") != "automatic" \
                and (m.get("selected") is False or m.get("inclusion") == "unsupported"):
            out.add(crumb[1])
    return out


def stream_replication_method(entry: Mapping[str, Any]) -> str | None:
    """Replication method of a catalog entry (``replication_method``, else the metadata's
    ``replication-method`` or ``forced-replication-method``), or None."""
    top: Mapping[str, Any] = {}
    for md in entry.get("metadata") or ():
        if md.get("breadcrumb") == []:
            top = md.get("metadata") or {}
    method = (entry.get("replication_method") or top.get("replication-method")
              or top.get("forced-replication-method"))
    return str(method).upper() if method else None


def select_streams(catalog: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """A copy of ``catalog`` with exactly the streams ``names`` (``tap_stream_id`` or
    ``stream``) selected at stream level; field selection is left to the tap's defaults."""
    wanted = set(names)
    streams = []
    for entry in catalog.get("streams") or ():
        entry = dict(entry)
        selected = entry.get("tap_stream_id") in wanted or entry.get("stream") in wanted
        metadata = [dict(m) for m in entry.get("metadata") or ()]
        top = next((m for m in metadata if m.get("breadcrumb") == []), None)
        if top is None:
            top = {"breadcrumb": [], "metadata": {}}
            metadata.insert(0, top)
        top["metadata"] = {**(top.get("metadata") or {}), "selected": selected}
        entry["metadata"] = metadata
        if selected:
            entry["selected"] = True
        else:
            entry.pop("selected", None)
        streams.append(entry)
    return {**catalog, "streams": streams}
