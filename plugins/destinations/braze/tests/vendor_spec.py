"""Braze's published rules for the requests this plugin sends (a test helper).

Braze publishes documents only (no OpenAPI file or SDK on PyPI covers ``/users/track``),
so each rule is written down here with the page that states it, and
:func:`request_errors` checks a request against all of them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

TRACK = "https://www.braze.com/docs/api/endpoints/user_data/post_user_track"
ATTRIBUTES = "https://www.braze.com/docs/api/objects_filters/user_attributes_object"
EVENT = "https://www.braze.com/docs/api/objects_filters/event_object"
DELETE = "https://www.braze.com/docs/api/endpoints/user_data/post_user_delete"

#: rule id -> (rule, URL of the page stating it)
RULES: dict[str, tuple[str, str]] = {
    "auth": ("REST API key as 'Authorization: Bearer <key>'", TRACK),
    "json": ("POST with a JSON body ('Content-Type: application/json')", TRACK),
    "track_arrays": ("/users/track takes only the arrays 'attributes', 'events' and "
                     "'purchases'", TRACK),
    "track_limit": ("at most 75 objects a request, 50 for 'Monthly Active Users CY 24-25' "
                    "contracts", TRACK),
    "identifier": ("every attribute and event object names its user with external_id, "
                   "user_alias, braze_id, email or phone", ATTRIBUTES),
    "update_existing_only": ("'_update_existing_only' is a boolean", ATTRIBUTES),
    "event_fields": ("an event has a string 'name', a 'time' in ISO 8601 and, if given, an "
                     "object 'properties' and a string 'app_id'", EVENT),
    "delete_one_kind": ("/users/delete takes exactly one of external_ids, user_aliases, "
                        "braze_ids, email_addresses, phone_numbers", DELETE),
    "delete_limit": ("at most 50 users a /users/delete request", DELETE),
}
IDENTIFIERS = ("external_id", "user_alias", "braze_id", "email", "phone")
DELETE_KINDS = ("external_ids", "user_aliases", "braze_ids", "email_addresses",
                "phone_numbers")


def _iso8601(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def request_errors(method: str, path: str, headers: Mapping[str, str], body: Any,
                   *, track_limit: int = 75) -> list[str]:
    """Every rule of :data:`RULES` one request breaks, each with its URL."""
    broken: list[tuple[str, str]] = []
    lower = {k.lower(): v for k, v in headers.items()}
    if "authorization" in lower and not lower["authorization"].startswith("Bearer "):
        broken.append(("auth", ""))
    if method != "POST" or not lower.get("content-type", "application/json").startswith(
            "application/json"):
        broken.append(("json", f"{method} {lower.get('content-type')}"))
    try:
        data = json.loads(body) if isinstance(body, str | bytes) else body
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return [f"{path}: {RULES['json'][0]} ({RULES['json'][1]})"]
    if path == "/users/track":
        extra = set(data) - {"attributes", "events", "purchases"}
        if extra:
            broken.append(("track_arrays", f"also {sorted(extra)}"))
        objects = [(name, obj) for name in ("attributes", "events", "purchases")
                   for obj in data.get(name) or []]
        if len(objects) > track_limit:
            broken.append(("track_limit", f"{len(objects)} objects, limit {track_limit}"))
        for name, obj in objects:
            if not isinstance(obj, dict) or not any(k in obj for k in IDENTIFIERS):
                broken.append(("identifier", name))
                continue
            if "_update_existing_only" in obj and \
                    not isinstance(obj["_update_existing_only"], bool):
                broken.append(("update_existing_only", name))
            if name == "events" and not (
                    isinstance(obj.get("name"), str) and _iso8601(obj.get("time"))
                    and isinstance(obj.get("properties", {}), dict)
                    and isinstance(obj.get("app_id", ""), str)):
                broken.append(("event_fields", json.dumps(obj)[:80]))
    elif path == "/users/delete":
        kinds = [k for k in data if k in DELETE_KINDS]
        if len(kinds) != 1 or set(data) - set(DELETE_KINDS):
            broken.append(("delete_one_kind", f"got {sorted(data)}"))
        if any(len(data[k]) > 50 for k in kinds):
            broken.append(("delete_limit", ""))
    else:
        broken.append(("json", f"{path} is not /users/track or /users/delete"))
    return [f"{path}: {RULES[rule][0]} ({RULES[rule][1]}) {detail}".rstrip()
            for rule, detail in broken]
