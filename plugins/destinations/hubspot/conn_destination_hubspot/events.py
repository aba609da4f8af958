"""HubSpot custom behavioral events: the ``events`` object (``mode: events``).

Each event becomes one occurrence in ``POST /events/v3/send/batch``
(https://developers.hubspot.com/docs/api-reference/legacy/events/send-event-data/batch-send-occurrences),
``{"inputs": [{"eventName", "email" | "objectId" | "utk", "occurredAt", "properties",
"uuid"}]}``, answered ``204`` without a body:

* ``eventName`` is the event's fully qualified name, ``pe{HubID}_{name}``
  (https://developers.hubspot.com/docs/api-reference/legacy/events/send-event-data/guide):
  conn's event name is looked up in the destination's ``event_names`` (``{feature_failed:
  pe1234567_feature_failed}``); a name already of that form is sent as it is; any other
  is rejected with a reason naming the setting (no request is sent for it).
* the person is the match key: ``email``, ``objectId`` (a record id) or ``utk``.
* ``occurredAt`` is ISO 8601 UTC; ``properties`` every other mapped field, as strings.
* ``uuid`` is conn's event id written as a UUID: "A unique identifier for the event
  occurrence. Must be unique within the event type. [...] When multiple events have the
  same ID within a year, the first will be accepted and all others will be rejected"
  (https://developers.hubspot.com/docs/api-reference/latest/events/send-event-data/send-event-occurrence).
  An event conn sends again (a lost answer, a crash) therefore lands once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from conn.destination import Capabilities, ObjectInfo, Rejection, WriteRequest

OBJECT = "events"
SEND_BATCH = "/events/v3/send/batch"
#: Occurrences per batch call. HubSpot's pages cited above state no number for this
#: endpoint; 100 is its CRM batch limit and keeps a 400 cheap to split.
BATCH_LIMIT = 100
#: The ways HubSpot links an occurrence to a record (the guide's identifier options).
IDENTIFIERS = ("email", "objectId", "utk")
QUALIFIED = re.compile(r"^pe\d+_[a-z0-9_]+$")

_FIELDS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "format": "email",
                  "description": "the contact's e-mail address"},
        "objectId": {"type": "string", "description": "the CRM record id"},
        "utk": {"type": "string", "description": "the visitor's usertoken (hubspotutk)"},
    },
    "additionalProperties": True,
}


def events_object(caps: Capabilities) -> ObjectInfo:
    """The ``events`` object: custom behavioral event occurrences (``mode: events``)."""
    return ObjectInfo(
        OBJECT, _FIELDS, IDENTIFIERS,
        Capabilities(batch_size=BATCH_LIMIT, modes=frozenset({"events"}),
                     supports_delete=False, rate_limit=caps.rate_limit,
                     concurrency=caps.concurrency),
        personal={"email": "email"},
        description="custom behavioral event occurrences (POST /events/v3/send/batch)")


def as_uuid(event_id: str) -> str:
    """conn's 32-hex-digit event id in the 8-4-4-4-12 form of a UUID."""
    h = event_id
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def event_inputs(request: WriteRequest, names: Mapping[str, str]
                 ) -> tuple[list[tuple[int, dict[str, Any]]], list[Rejection]]:
    """(index, input) of each event HubSpot can take, and the rejections of the others
    (an event name with no fully qualified name)."""
    from conn.events import envelopes

    key = request.match_key
    inputs: list[tuple[int, dict[str, Any]]] = []
    rejected: list[Rejection] = []
    for i, ev in enumerate(envelopes(request)):
        name = str(ev["name"])
        qualified = names.get(name) or (name if QUALIFIED.match(name) else None)
        if qualified is None:
            rejected.append(Rejection(i, f"no HubSpot event for {name!r}: add its fully "
                                         f"qualified name (pe<HubID>_<name>) under the "
                                         f"destination's config.event_names", True))
            continue
        item: dict[str, Any] = {"eventName": qualified, key: _text(ev["person"][key]),
                                "occurredAt": ev["occurred_at"],
                                "properties": {k: _text(v)
                                               for k, v in ev["properties"].items()
                                               if v is not None},
                                "uuid": as_uuid(ev["id"])}
        inputs.append((i, item))
    return inputs, rejected
