"""Events as a sync kind (``mode: events``): each new or changed row is one event.

A sync in events mode declares what names and dates its events::

    mode: events
    event: {name: feature_failed, time_from: failed_at}     # or name_from: a column

The event's name and time travel through the consent gate and the mapper like every
other field: :func:`event_mapping` adds two reserved fields (:data:`NAME_FIELD`,
:data:`TIME_FIELD`) to the sync's mapping and :func:`event_object` makes them required,
so a row without a time or a name is rejected with a reason. The payload hash of a row
therefore covers its name, its time and its properties: an event fires when what the
mapping sends changes, not when an unmapped column does.

Each event's id is the record's idempotency key for the operation ``event``
(:mod:`conn.idempotency`): derived from the sync, the object, the primary key, the
payload acknowledged before and the new payload (which holds the time). The state
records the acknowledged payload per key, so an acknowledged event is never planned
again, and an event re-sent after a crash or a failed request carries its first id.
Destinations read requests as events with :func:`envelopes`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

from conn.pipeline import records

if TYPE_CHECKING:
    from conn.config.model import SyncConfig
    from conn.destination import ObjectInfo
    from conn.pipeline import WriteRequest

#: The sync mode and the operation its requests carry.
MODE = "events"
OPERATION = "event"
#: Reserved mapped fields holding each event's name and time (never sent as properties).
NAME_FIELD = "$event"
TIME_FIELD = "$occurred_at"
ENVELOPE = (NAME_FIELD, TIME_FIELD)


def event_mapping(sync: SyncConfig) -> dict[str, Any]:
    """The sync's mapping with the event's name and time added as reserved fields (a
    missing mapping stays "every same-named column")."""
    spec = sync.event or {}
    mapping = sync.mapping
    out: dict[str, Any] = ({"*": "*"} if mapping in (None, {}, "*") else dict(mapping))
    if "name_from" in spec:
        out[NAME_FIELD] = {"from": spec["name_from"], "cast": "string"}
    else:
        out[NAME_FIELD] = {"value": str(spec.get("name", ""))}
    out[TIME_FIELD] = {"from": spec.get("time_from", ""), "cast": "datetime"}
    return out


def event_sync(sync: SyncConfig) -> SyncConfig:
    """``sync`` as its mapper sees it in events mode (see :func:`event_mapping`)."""
    return dataclasses.replace(sync, mapping=event_mapping(sync))


def event_object(obj: ObjectInfo) -> ObjectInfo:
    """``obj`` with the reserved name and time fields declared and required: the mapper
    rejects an event without either, with a reason, instead of sending it."""
    fields = dict(obj.fields)
    fields["properties"] = {**obj.properties, NAME_FIELD: {"type": "string", "minLength": 1},
                            TIME_FIELD: {}}
    fields["required"] = [*obj.required, *(f for f in ENVELOPE if f not in obj.required)]
    return dataclasses.replace(obj, fields=fields)


def iso_time(value: Any) -> str | None:
    """An event time as ISO 8601 in UTC with milliseconds (``2026-12-01T10:00:00.000Z``);
    a naive timestamp is taken as UTC."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds") + "Z"
    if isinstance(value, dt.date):
        return f"{value.isoformat()}T00:00:00.000Z"
    return str(value)


def envelopes(request: WriteRequest) -> list[dict[str, Any]]:
    """The request's records as events, in order: ``{"id", "name", "occurred_at",
    "person": {match_key: value}, "properties": {...}}``. ``id`` is the record's
    idempotency key; ``properties`` every mapped field but the match key and the
    reserved ones (null values of ``null: skip`` fields left out)."""
    ids = request.idempotency_keys()
    key = request.match_key
    out = []
    for rec, event_id in zip(records(request.records), ids, strict=True):
        props = {k: v for k, v in rec.items() if k not in ENVELOPE and k != key}
        out.append({"id": event_id, "name": rec.get(NAME_FIELD),
                    "occurred_at": iso_time(rec.get(TIME_FIELD)),
                    "person": {key: rec.get(key)}, "properties": props})
    return out
