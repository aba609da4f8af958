"""Braze custom events for ``mode: events``: the object ``custom_events``.

conn names and times each event (the sync's ``event:``); the match key names the user
(``external_id``, ``email`` or ``braze_id``). Each event becomes one object of the
``events`` array of ``POST /users/track``
(https://www.braze.com/docs/api/endpoints/user_data/post_user_track), at most 75 objects a
request (50 on "Monthly Active Users CY 24-25" contracts; attributes and events share the
limit, and conn sends events alone), shaped as Braze's event object
(https://www.braze.com/docs/api/objects_filters/event_object): ``{<identifier>, "name",
"time", "properties", "app_id"?}``.

Braze's event object has no id and the endpoint takes no idempotency key: Braze does not
deduplicate events. conn sends its event id as the property ``conn_event_id`` so that
exports and Currents consumers can drop a copy, and never plans an acknowledged event
again; an event re-sent after a lost answer or a crash (at most ``concurrency`` requests)
can be logged twice by Braze.
"""

from __future__ import annotations

from typing import Any

from conn.destination import Capabilities, ObjectInfo, WriteRequest

OBJECT = "custom_events"
#: The property carrying conn's event id (Braze has no event id field).
ID_PROPERTY = "conn_event_id"
IDENTIFIERS = ("external_id", "email", "braze_id")

_FIELDS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "external_id": {"type": "string", "description": "the user's external id"},
        "email": {"type": "string", "format": "email", "description": "the user's e-mail"},
        "braze_id": {"type": "string", "description": "the user's Braze id"},
    },
    "additionalProperties": True,
}


def custom_events_object(caps: Capabilities) -> ObjectInfo:
    """``custom_events``: one Braze custom event per event of a ``mode: events`` sync."""
    return ObjectInfo(OBJECT, _FIELDS, IDENTIFIERS,
                      Capabilities(batch_size=caps.batch_size, modes=frozenset({"events"}),
                                   supports_delete=False, rate_limit=caps.rate_limit,
                                   concurrency=caps.concurrency),
                      personal={"external_id": "id", "email": "email"},
                      description="custom events named and timed by the sync (mode: events)")


def track_events(request: WriteRequest, app_id: str | None,
                 json_value: Any) -> list[dict[str, Any]]:
    """The ``events`` array of ``/users/track`` for ``request``'s events, in order."""
    from conn.events import envelopes

    key = request.match_key
    out = []
    for ev in envelopes(request):
        obj: dict[str, Any] = {key: ev["person"][key], "name": ev["name"],
                               "time": ev["occurred_at"]}
        if app_id:
            obj["app_id"] = app_id
        props = {k: json_value(v) for k, v in ev["properties"].items() if v is not None}
        props[ID_PROPERTY] = ev["id"]
        obj["properties"] = props
        out.append(obj)
    return out
