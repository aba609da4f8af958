"""The ``braze`` destination: user attributes and custom events through ``/users/track``,
user deletion through ``/users/delete``.

=========================  ==================================================================
object / operation         request (``POST``, JSON, ``Authorization: Bearer <REST key>``)
=========================  ==================================================================
users upsert               ``/users/track`` ``{"attributes": [{<identifier>, "_update_
                           existing_only": false, ...}]}``, at most ``batch_size`` (75;
                           50 on "Monthly Active Users CY 24-25" contracts) a request
users update               same with ``"_update_existing_only": true``
users delete (mirror),     ``/users/delete`` with ``external_ids``, ``email_addresses`` or
users erase                ``braze_ids`` (at most 50 a request)
events append              ``/users/track`` ``{"events": [{<identifier>, "name", "time",
                           "properties"}]}``, at most ``batch_size`` a request
custom_events event        the same, for ``mode: events`` (name and time from the sync's
                           ``event:``, conn's event id as ``properties.conn_event_id``;
                           see :mod:`conn_destination_braze.custom_events`)
=========================  ==================================================================

A response lists bad objects in ``errors`` as ``{"type", "input_array", "index"}``; each
becomes a rejection of that row with Braze's message. A fatal 400 (the whole payload
refused) is split in halves until the bad objects are isolated. 429 and 5xx are retried
by the toolkit's client under the documented limit (3,000 requests per 3 seconds).

Erasure (``conn forget``) is Braze's own erasure API, ``POST /users/delete``: it deletes the
user profile permanently ("cannot be undone"), which is also why mirror deletes use it
(https://www.braze.com/docs/api/endpoints/user_data/post_user_delete). Braze answers
``{"deleted": N, "message": "success"}`` and names no identifier it did not find: a user
Braze does not hold counts as erased (the outcome the request asks for is true), so a
second erase of the same users is acknowledged too.

httpx and the HTTP toolkit are imported when a client is first needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from conn.destination import (
    Capabilities,
    Destination,
    ObjectInfo,
    RateLimit,
    Rejection,
    WriteRequest,
    WriteResult,
)
from conn.errors import CheckFailed, ConfigError, ConnError, RetryLater
from conn.http import LazyClient
from conn.http.config import client_from_config, concurrency_schema, http_settings_schema

if TYPE_CHECKING:
    import httpx
    from conn.http import HttpClient

#: Objects per /users/track request: 75 by default, 50 for customers on the "Monthly
#: Active Users CY 24-25" contract (setting ``batch_size``),
#: https://www.braze.com/docs/api/endpoints/user_data/post_user_track
TRACK_LIMIT = 75
MAU_CY_24_25_LIMIT = 50
#: Identifiers per /users/delete request.
DELETE_LIMIT = 50
#: The erasure API ``users`` declares (Capabilities.erasure),
#: https://www.braze.com/docs/api/endpoints/user_data/post_user_delete
ERASURE = "Braze POST /users/delete (permanent user deletion)"
#: /users/track: 3,000 requests per 3 seconds (since 2024-10-28).
TRACK_RATE = RateLimit(requests=3000, per_seconds=3.0, burst=100)
#: Match key -> the /users/delete field holding it.
DELETE_FIELDS = {"external_id": "external_ids", "email": "email_addresses",
                 "braze_id": "braze_ids"}
USER_IDENTIFIERS = ("external_id", "email", "braze_id")
EVENT_RESERVED = ("event_id", "external_id", "braze_id", "email", "name", "time", "app_id",
                  "properties")

_ATTRIBUTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["string", "number", "integer", "boolean", "datetime", "array",
                          "object"], "default": "string"},
        "personal": {"type": "string"},
        "description": {"type": "string"},
    },
}


def _json_value(value: Any) -> Any:
    """A JSON value for Braze (dates and times as ISO 8601)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if type(value).__name__ == "Decimal":
        return float(value)
    return value


def _body(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {"message": resp.text[:300]}
    return body if isinstance(body, dict) else {"message": str(body)[:300]}


class BrazeDestination(LazyClient, Destination):
    """Writes Braze user attributes (object ``users``) and custom events (``events``)."""

    name: ClassVar[str] = "braze"
    #: What says where it writes (compared between runs; see Destination.target_identity).
    identity_keys: ClassVar[tuple[str, ...] | None] = ("rest_endpoint", "app_id")
    description: ClassVar[str] = "Braze user attributes and custom events (/users/track)"
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["api_key", "rest_endpoint"],
        "properties": {
            "api_key": {"type": "string", "minLength": 1, "secret": True,
                        "description": "REST API key with users.track (and users.delete "
                                       "for mirror mode)"},
            "rest_endpoint": {"type": "string", "pattern": r"^https?://",
                              "description": "your instance's REST endpoint, e.g. "
                                             "https://rest.iad-01.braze.com"},
            "app_id": {"type": "string", "description": "app identifier added to events"},
            "custom_attributes": {"type": "object", "additionalProperties": _ATTRIBUTE_SCHEMA,
                                  "description": "custom user attributes by name"},
            "batch_size": {"type": "integer", "minimum": 1, "maximum": TRACK_LIMIT,
                           "default": TRACK_LIMIT,
                           "description": "objects per /users/track request: 75 (Braze's "
                                          "default); 50 if your contract is 'Monthly "
                                          "Active Users CY 24-25'"},
            "concurrency": concurrency_schema(default=4, maximum=32),
            **http_settings_schema(timeout=30),
        },
    }

    def __init__(self, config: Mapping[str, Any] | None = None, *, instance: str = "",
                 project_dir: str | Path | None = None) -> None:
        super().__init__(config, instance=instance, project_dir=project_dir)
        for key in ("api_key", "rest_endpoint"):
            if not self.config.get(key):
                raise ConfigError(f"braze: missing required setting {key!r}",
                                  path=f"config.{key}")
        from conn import secrets

        secrets.register(self.config["api_key"])
        self._objects: list[ObjectInfo] | None = None
        #: Objects per /users/track request (``batch_size``).
        self.track_limit = int(self.config.get("batch_size", TRACK_LIMIT))

    # -- objects ---------------------------------------------------------------------------

    def objects(self) -> list[ObjectInfo]:
        """``users`` (attributes; upsert, update, mirror), ``events`` (append) and
        ``custom_events`` (``mode: events``)."""
        if self._objects is not None:
            return self._objects
        conc = int(self.config.get("concurrency", 4))
        custom: dict[str, Any] = {}
        personal: dict[str, str] = {}
        for attr, spec in (self.config.get("custom_attributes") or {}).items():
            kind = spec.get("type", "string")
            field: dict[str, Any] = {"type": [{"datetime": "string"}.get(kind, kind), "null"]}
            if kind == "datetime":
                field["format"] = "date-time"
            if spec.get("description"):
                field["description"] = spec["description"]
            custom[attr] = field
            if spec.get("personal"):
                personal[attr] = spec["personal"]
        users = ObjectInfo.from_package(__package__, "users", Capabilities(
            batch_size=self.track_limit, modes=frozenset({"upsert", "update", "mirror"}),
            supports_delete=True, rate_limit=TRACK_RATE, concurrency=conc, erasure=ERASURE))
        events = ObjectInfo.from_package(__package__, "events", Capabilities(
            batch_size=self.track_limit, modes=frozenset({"append"}), supports_delete=False,
            rate_limit=TRACK_RATE, concurrency=conc))
        from conn_destination_braze.custom_events import custom_events_object

        self._objects = [users.with_fields(custom, personal=personal), events,
                         custom_events_object(events.capabilities)]
        return self._objects

    # -- HTTP ------------------------------------------------------------------------------

    def make_client(self) -> HttpClient:
        """The HTTP client (:class:`~conn.http.LazyClient` makes it on first use)."""
        from conn.http import BearerToken

        return client_from_config(
            self.config,
            self.config["rest_endpoint"].rstrip("/"),
            auth=BearerToken(self.config["api_key"]),
            headers={"Accept": "application/json"},
            timeout=30,
            rate_limit=TRACK_RATE,
            name=self.instance,
        )

    def _post(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        resp = self.client.post(path, json=body)
        if resp.status_code in (401, 403):
            raise ConnError(f"Braze refused the API key (HTTP {resp.status_code}: "
                            f"{_body(resp).get('message', '')}); check the key, its "
                            "permissions and the REST endpoint of your instance")
        return resp

    def check(self) -> None:
        """``POST /users/track`` with no data: 401/403 mean a bad key or a missing
        ``users.track`` permission; Braze's 400 for the empty payload proves both fine.
        Nothing is written; one attempt (a check should answer at once)."""
        from conn.http import NO_RETRY

        try:
            resp = self.client.post("/users/track", json={"attributes": []}, retry=NO_RETRY)
        except RetryLater as exc:
            raise CheckFailed(f"Braze is unreachable: {getattr(exc, 'reason', exc)}") from None
        if resp.status_code in (401, 403) or resp.status_code >= 404:
            raise CheckFailed(f"Braze check failed (HTTP {resp.status_code}): "
                              f"{_body(resp).get('message', '')}")

    # -- payloads --------------------------------------------------------------------------

    def _attributes(self, request: WriteRequest) -> list[dict[str, Any]]:
        key = request.match_key
        existing_only = request.operation == "update"
        out = []
        for row in request.to_pylist():
            obj: dict[str, Any] = {key: row[key]}
            for k, v in row.items():
                if k == key or (k in ("external_id", "braze_id") and k != key):
                    continue
                obj[k] = _json_value(v)
            obj["_update_existing_only"] = existing_only
            out.append(obj)
        return out

    def _events(self, request: WriteRequest) -> list[dict[str, Any]]:
        app_id = self.config.get("app_id")
        out = []
        for row in request.to_pylist():
            ev: dict[str, Any] = {}
            for ident in USER_IDENTIFIERS:
                if row.get(ident) is not None:
                    ev[ident] = row[ident]
                    break
            ev["name"] = row.get("name")
            ev["time"] = _json_value(row.get("time"))
            if row.get("app_id") or app_id:
                ev["app_id"] = row.get("app_id") or app_id
            props = {k: _json_value(v) for k, v in (row.get("properties") or {}).items()}
            props.update({k: _json_value(v) for k, v in row.items()
                          if k not in EVENT_RESERVED and v is not None})
            if row.get("event_id") is not None:
                props["event_id"] = row["event_id"]
            ev["properties"] = props
            out.append(ev)
        return out

    def _calls(self, request: WriteRequest) -> list[tuple[str, dict[str, Any]]]:
        if request.operation in ("delete", "erase"):
            field = DELETE_FIELDS[request.match_key]
            values = [str(v) for v in request.records.column(0).to_pylist() if v is not None]
            return [("/users/delete", {field: values[i:i + DELETE_LIMIT]})
                    for i in range(0, len(values), DELETE_LIMIT)]
        if request.operation == "event":
            from conn_destination_braze.custom_events import track_events

            return [("/users/track", {"events": track_events(
                request, self.config.get("app_id"), _json_value)})]
        if request.object.name == "events":
            return [("/users/track", {"events": self._events(request)})]
        return [("/users/track", {"attributes": self._attributes(request)})]

    def describe_requests(self, request: WriteRequest) -> list[dict[str, Any]]:
        """The exact calls of :meth:`write_batch`, API key masked; no network."""
        from conn.http.dry_run import describe

        headers = {"Content-Type": "application/json", "Authorization": "Bearer ***"}
        return [describe("POST", path, json=body, headers=headers,
                         base_url=self.config["rest_endpoint"].rstrip("/"))
                for path, body in self._calls(request)]

    # -- writing ---------------------------------------------------------------------------

    def write_batch(self, request: WriteRequest) -> WriteResult:
        """``/users/track`` calls of at most ``batch_size`` objects, or ``/users/delete``
        calls (``delete`` and ``erase`` alike: Braze's deletion is permanent)."""
        from conn.http import write_in_chunks, write_with_split

        if request.operation in ("delete", "erase"):
            return self._delete(request)
        if request.match_key not in USER_IDENTIFIERS and request.object.name == "users":
            raise ConfigError(f"braze: users are matched by one of {USER_IDENTIFIERS}")
        (path, body), = self._calls(request)
        array = next(iter(body))

        def send(items: Sequence[dict[str, Any]]) -> WriteResult:
            return self._track(path, array, list(items))

        return write_in_chunks(body[array], self.track_limit,
                               lambda chunk: write_with_split(chunk, send))

    def _track(self, path: str, array: str, items: list[dict[str, Any]]) -> WriteResult:
        from conn.http import BatchRejected

        resp = self._post(path, {array: items})
        body = _body(resp)
        if resp.status_code >= 400:
            errors = body.get("errors") or []
            raise BatchRejected(str(body.get("message") or f"HTTP {resp.status_code}")
                                + (f" ({errors})" if errors else ""), retryable=False,
                                status=resp.status_code)
        result = WriteResult()
        seen: set[int] = set()
        for err in body.get("errors") or []:
            idx = err.get("index")
            if err.get("input_array", array) != array or not isinstance(idx, int):
                continue
            if 0 <= idx < len(items) and idx not in seen:
                seen.add(idx)
                result.rejected.append(Rejection(idx, str(err.get("type") or "rejected"),
                                                 retryable=False))
        result.rejected.sort(key=lambda r: r.index)
        return result

    def _delete(self, request: WriteRequest) -> WriteResult:
        """``/users/delete`` in calls of at most 50 identifiers (irreversible). A refused
        call (4xx other than 401/403) rejects its identifiers with Braze's message; users
        Braze does not hold are not an error (``deleted`` counts only those it found)."""
        from conn.http import write_in_chunks

        field = DELETE_FIELDS.get(request.match_key)
        if field is None:
            raise ConfigError(f"braze: users are deleted by one of {tuple(DELETE_FIELDS)}")
        values = request.records.column(0).to_pylist()

        def one(chunk: Sequence[Any]) -> WriteResult:
            keep = [str(v) for v in chunk if v is not None]
            if not keep:
                return WriteResult()
            resp = self._post("/users/delete", {field: keep})
            if resp.status_code >= 400:
                reason = f"HTTP {resp.status_code}: {_body(resp).get('message', '')}"
                return WriteResult.all_rejected(len(chunk), reason, retryable=True)
            return WriteResult()

        return write_in_chunks(values, DELETE_LIMIT, one)
