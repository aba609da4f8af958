"""The ``hubspot`` destination: HubSpot CRM contacts and companies through the v3 batch
object endpoints.

===========  =====================================================================
operation    request (``POST``, JSON, at most 100 inputs)
===========  =====================================================================
upsert       ``/crm/v3/objects/{type}/batch/upsert`` by ``idProperty`` (e-mail or a
             unique property); ``batch/update`` when matching on ``hs_object_id``
insert       ``/crm/v3/objects/{type}/batch/create``
update       ``/crm/v3/objects/{type}/batch/update`` (``idProperty`` unless matching on
             ``hs_object_id``)
delete       ``/crm/v3/objects/{type}/batch/read`` (resolve record ids by ``idProperty``,
             unless matching on ``hs_object_id``), then ``batch/archive``
event        object ``events`` (``mode: events``): ``/events/v3/send/batch``, custom
             behavioral event occurrences (see :mod:`conn_destination_hubspot.events`)
erase        contacts only: ``/crm/v3/objects/contacts/gdpr-delete``, one call per
             contact, ``{"objectId": <value>, "idProperty": <match key>}`` (no
             ``idProperty`` when matching on ``hs_object_id``)
merge        contacts only (profile merges): ``/crm/v3/objects/contacts/batch/read``
             (resolve both record ids by ``idProperty``), then
             ``/crm/v3/objects/contacts/merge`` per pair, ``{"primaryObjectId":
             <survivor>, "objectIdToMerge": <absorbed>}`` (see
             :mod:`conn_destination_hubspot.merge`)
===========  =====================================================================

Objects named in ``lists`` are static contact lists: upsert adds the contacts to the list,
a mirror delete removes them (``PUT /crm/v3/lists/{listId}/memberships/add|remove``; see
:mod:`conn_destination_hubspot.lists`).

Erasure (``conn forget``) uses HubSpot's GDPR delete, "Permanently delete a contact
(GDPR-compliant)" (https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/
contacts/gdpr/gdpr-delete-contact): unlike ``batch/archive`` (restorable for 90 days) it
deletes the contact and its associated content for good, and an e-mail address it does not
find is blocklisted so it cannot come back. HubSpot answers ``204``; a ``404`` (a record id
HubSpot no longer has) counts as erased: the person is not there, which is what the request
asks for, and a second erase must not fail. Companies are not persons: they declare no
erasure (``conn forget`` archives them through ``delete``).

Responses 200/201/207 carry ``results`` and ``errors``; each error names the inputs it
concerns in ``context.ids`` (the id values sent) or ``context.objectWriteTraceId`` (this
plugin sends each input's row index as its trace id), so a failing input becomes a
per-record rejection with HubSpot's message. A whole-batch 400 is split in halves until the
offending records are isolated. 429, 5xx and ``423 Locked`` (HubSpot locks records under
high-volume writes for about 2 s) are retried by the toolkit's client with backoff; a 429
of the ``DAILY`` policy stops the run (rows stay pending) instead of retrying hot.

Bodies follow HubSpot's OpenAPI specification (the models of ``hubspot-api-client``):
property values are strings, batch create carries ``associations`` and batch read
``propertiesWithHistory`` (both required there; sent empty).

httpx and the HTTP toolkit are imported when a client is first needed, so registering the
plugin stays cheap.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
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

from conn_destination_hubspot import merge

if TYPE_CHECKING:
    import httpx
    from conn.http import HttpClient

DEFAULT_BASE_URL = "https://api.hubapi.com"
#: Inputs per batch call (HubSpot's documented batch limit).
BATCH_LIMIT = 100
OBJECT_TYPES = ("contacts", "companies")
#: Unique key HubSpot knows without a custom property.
RECORD_ID = "hs_object_id"
#: The erasure API of ``contacts`` (Capabilities.erasure) and its path,
#: https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/gdpr/gdpr-delete-contact
ERASURE = "HubSpot GDPR delete (POST /crm/v3/objects/contacts/gdpr-delete)"
GDPR_DELETE = "/crm/v3/objects/contacts/gdpr-delete"

#: Documented limits per tier: (requests per 10 s per app, requests per day per account).
#: https://developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines
TIERS: dict[str, tuple[int, int]] = {
    "free": (100, 250_000),
    "starter": (100, 250_000),
    "professional": (190, 625_000),
    "enterprise": (190, 1_000_000),
}
#: The API limit increase pack: 200 requests per 10 s, and 1,000,000 more a day per pack
#: on top of the tier's daily limit (at most two packs), same source.
PACK_PER_10S = 200
PACK_DAILY = 1_000_000
MAX_PACKS = 2
#: Statuses retried with backoff besides 429 and 5xx: 423 Locked (a record written by
#: many requests at once is locked for about 2 s; "wait and retry"),
#: https://developers.hubspot.com/docs/api-reference/error-handling
LOCKED = 423
#: Wait after a 423 (HubSpot's lock lasts about 2 s) and how many times to wait.
LOCK_WAIT = 2.0
LOCK_RETRIES = 5

_PROPERTY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["string", "number", "integer", "boolean", "date", "datetime",
                          "enumeration"], "default": "string",
                 "description": "value type; HubSpot stores enumerations, dates and "
                                "datetimes as strings (ISO 8601 UTC or epoch ms)"},
        "unique": {"type": "boolean", "default": False,
                   "description": "the property has hasUniqueValue set in HubSpot: it can "
                                  "serve as upsert key (idProperty)"},
        "personal": {"type": "string",
                     "description": "personal-data kind (email, phone, name, ...)"},
        "description": {"type": "string"},
    },
}

_JSON_TYPES = {"string": "string", "number": "number", "integer": "integer",
               "boolean": "boolean", "enumeration": "string"}


def _custom_field(spec: Mapping[str, Any]) -> dict[str, Any]:
    kind = spec.get("type", "string")
    out: dict[str, Any] = {"type": [_JSON_TYPES.get(kind, "string"), "null"]}
    if kind == "date":
        out["format"] = "date"
    elif kind == "datetime":
        out["format"] = "date-time"
    if spec.get("description"):
        out["description"] = spec["description"]
    return out


def _cell(value: Any) -> str:
    """A property value as HubSpot's specification types it: a string (``""`` clears the
    property; numbers in plain decimal notation, never an exponent)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _message(err: Mapping[str, Any]) -> str:
    msg = str(err.get("message") or err.get("category") or "rejected by HubSpot")
    cat = err.get("category")
    return f"{cat}: {msg}" if cat and not msg.startswith(str(cat)) else msg


def _error_body(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {"message": resp.text[:300]}
    return body if isinstance(body, dict) else {"message": str(body)[:300]}


class HubSpotDestination(LazyClient, Destination):
    """Writes HubSpot contacts and companies with the v3 batch endpoints.

    Objects ``contacts`` and ``companies`` carry HubSpot's standard properties plus the
    portal's custom properties declared under ``custom_properties``; a custom property
    declared ``unique: true`` (``hasUniqueValue`` in HubSpot) can be the match key.
    """

    name: ClassVar[str] = "hubspot"
    #: What says where it writes (compared between runs; see Destination.target_identity).
    identity_keys: ClassVar[tuple[str, ...] | None] = ("base_url",)
    description: ClassVar[str] = "HubSpot CRM contacts and companies (batch upsert, archive)"
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["access_token"],
        "properties": {
            "access_token": {"type": "string", "minLength": 1, "secret": True,
                             "description": "private-app access token (Bearer)"},
            "base_url": {"type": "string", "default": DEFAULT_BASE_URL,
                         "description": "API host (change only for tests or proxies)"},
            "tier": {"enum": list(TIERS), "default": "free",
                     "description": "subscription tier: sets the documented rate limit "
                                    "(requests per 10 s per app, per day per account)"},
            "api_limit_packs": {"type": "integer", "minimum": 0, "maximum": MAX_PACKS,
                                "default": 0,
                                "description": "API limit increase packs bought: 200 "
                                               "requests per 10 s, +1,000,000 a day each"},
            "daily_limit": {"type": "integer", "minimum": 1,
                            "description": "override the tier's daily request budget"},
            "concurrency": concurrency_schema(default=2, maximum=16),
            "event_names": {
                "type": "object",
                "additionalProperties": {"type": "string", "pattern": r"^pe\d+_[a-z0-9_]+$"},
                "description": "object `events` (mode: events): each conn event name's "
                               "fully qualified HubSpot name, pe<HubID>_<name>",
            },
            "lists": {
                "type": "object",
                "additionalProperties": {"type": "string", "pattern": r"^[0-9]+$"},
                "description": "static (MANUAL) contact lists as objects: object name -> "
                               "list id; upsert adds the contacts, mirror deletes remove "
                               "them from the list (see conn_destination_hubspot.lists)",
            },
            "custom_properties": {
                "type": "object",
                "additionalProperties": False,
                "description": "portal-specific properties per object, by internal name",
                "properties": {t: {"type": "object",
                                   "additionalProperties": _PROPERTY_SCHEMA}
                               for t in OBJECT_TYPES},
            },
            **http_settings_schema(timeout=30),
        },
    }

    def __init__(self, config: Mapping[str, Any] | None = None, *, instance: str = "",
                 project_dir: str | Path | None = None) -> None:
        super().__init__(config, instance=instance, project_dir=project_dir)
        if not self.config.get("access_token"):
            raise ConfigError("hubspot: missing required setting 'access_token'",
                              path="config.access_token")
        from conn import secrets

        secrets.register(self.config["access_token"])
        self._objects: list[ObjectInfo] | None = None
        #: Sleep used while a record lock (423) lasts (tests replace it).
        self.sleep: Callable[[float], None] = time.sleep

    # -- configuration ---------------------------------------------------------------------

    def rate_limit(self) -> RateLimit:
        """The documented limit of the configured tier and packs (burst of 10 within the
        window): a pack raises the 10 s limit to 200 and adds 1,000,000 a day."""
        per_10s, daily = TIERS[self.config.get("tier", "free")]
        packs = int(self.config.get("api_limit_packs", 0))
        if packs:
            per_10s, daily = max(per_10s, PACK_PER_10S), daily + PACK_DAILY * packs
        return RateLimit(requests=per_10s, per_seconds=10.0, burst=10,
                         daily=int(self.config.get("daily_limit") or daily))

    def objects(self) -> list[ObjectInfo]:
        """``contacts`` and ``companies``: standard plus configured custom properties."""
        if self._objects is not None:
            return self._objects
        caps = Capabilities(batch_size=BATCH_LIMIT,
                            modes=frozenset({"upsert", "insert", "update", "mirror"}),
                            supports_delete=True, rate_limit=self.rate_limit(),
                            concurrency=int(self.config.get("concurrency", 2)))
        out = []
        custom = self.config.get("custom_properties") or {}
        for object_type in OBJECT_TYPES:
            specs = custom.get(object_type) or {}
            # Only contacts are persons, with a GDPR delete and a merge of profiles;
            # companies archive.
            obj_caps = replace(caps, erasure=ERASURE, merges=merge.MERGES) \
                if object_type == "contacts" else caps
            standard = ObjectInfo.from_package(__package__, object_type, obj_caps)
            out.append(standard.with_fields(
                {prop: _custom_field(spec) for prop, spec in specs.items()},
                identifiers=[prop for prop, spec in specs.items() if spec.get("unique")],
                personal={prop: spec["personal"] for prop, spec in specs.items()
                          if spec.get("personal")}))
        from conn_destination_hubspot.events import events_object
        from conn_destination_hubspot.lists import list_objects

        out.append(events_object(caps))
        lists = self.config.get("lists") or {}
        taken = {o.name for o in out} & set(lists)
        if taken:
            raise ConfigError(f"hubspot: list object name(s) {sorted(taken)} clash with "
                              "built-in objects; name the lists otherwise",
                              path="config.lists")
        out += list_objects(lists, caps)
        self._objects = out
        return out

    # -- HTTP ------------------------------------------------------------------------------

    def make_client(self) -> HttpClient:
        """The HTTP client (:class:`~conn.http.LazyClient` makes it on first use)."""
        from conn.http import BearerToken

        return client_from_config(
            self.config,
            self.config.get("base_url", DEFAULT_BASE_URL),
            auth=BearerToken(self.config["access_token"]),
            headers={"Accept": "application/json"},
            timeout=30,
            rate_limit=self.rate_limit(),
            name=self.instance,
        )

    @staticmethod
    def _retryable(resp: httpx.Response) -> bool:
        """429 (except the DAILY policy) and 5xx are worth retrying at once, with the
        client's backoff (423 Locked waits for the lock instead: :meth:`_post`)."""
        if resp.status_code == 429:
            return _error_body(resp).get("policyName") != "DAILY"
        return resp.status_code >= 500 and resp.status_code not in (501, 505)

    def _post(self, path: str, body: Any, method: str = "POST") -> httpx.Response:
        """POST (or ``method``) with retries; raise for credential problems and the
        daily cap.

        ``423 Locked`` means other writes to the same records hold a lock for about 2 s:
        wait that long (plus jitter) and send again, up to ``LOCK_RETRIES`` times; then
        the rows stay pending (never rejected: the data is fine)."""
        resp = self.client.request(method, path, json=body, retry_on=self._retryable)
        for _ in range(LOCK_RETRIES):
            if resp.status_code != LOCKED:
                break
            self.sleep(LOCK_WAIT + random.uniform(0, LOCK_WAIT / 2))
            resp = self.client.request(method, path, json=body, retry_on=self._retryable)
        if resp.status_code == LOCKED:
            raise RetryLater(f"HubSpot kept the records locked (HTTP 423: "
                             f"{_message(_error_body(resp))}) after {LOCK_RETRIES} waits of "
                             f"about {LOCK_WAIT:.0f} s; the rows stay pending")
        if resp.status_code == 429:
            raise RetryLater(
                f"HubSpot daily request limit reached ({_error_body(resp).get('message')}); "
                "it resets at midnight in the account's time zone. Unsent rows stay pending."
            )
        if resp.status_code in (401, 403):
            body = _error_body(resp)
            raise ConnError(f"HubSpot refused the credentials (HTTP {resp.status_code}: "
                            f"{body.get('category', '')} {body.get('message', '')}".rstrip()
                            + "); check the private-app token and its scopes")
        return resp

    # -- check -----------------------------------------------------------------------------

    def check(self) -> None:
        """``GET /account-info/v3/api-usage/daily/private-apps``: validates the token (one
        attempt: a check should answer at once)."""
        from conn.http import NO_RETRY

        try:
            resp = self.client.get("/account-info/v3/api-usage/daily/private-apps",
                                   retry=NO_RETRY)
        except RetryLater as exc:
            raise CheckFailed(f"HubSpot is unreachable: {getattr(exc, 'reason', exc)}") \
                from None
        if resp.status_code >= 400:
            body = _error_body(resp)
            raise CheckFailed(f"HubSpot check failed (HTTP {resp.status_code}): "
                              f"{body.get('category', '')} {body.get('message', '')}".rstrip())

    # -- request building ------------------------------------------------------------------

    def _plan(self, request: WriteRequest) -> list[tuple[str, dict[str, Any]]]:
        """(path, body) of the single call ``write_batch`` sends for an upsert, insert or
        update (deletes: see :meth:`_archive_plan`)."""
        t, key, op = request.object.name, request.match_key, request.operation
        rows = request.to_pylist()
        inputs: list[dict[str, Any]] = []
        if op == "insert":
            for i, row in enumerate(rows):
                props = {k: _cell(v) for k, v in row.items() if k != RECORD_ID}
                inputs.append({"associations": [], "properties": props,
                               "objectWriteTraceId": str(i)})
            return [(f"/crm/v3/objects/{t}/batch/create", {"inputs": inputs})]
        by_record_id = key == RECORD_ID
        verb = "update" if op == "update" or by_record_id else "upsert"
        for i, row in enumerate(rows):
            props = {k: _cell(v) for k, v in row.items() if k not in (key, RECORD_ID)}
            item: dict[str, Any] = {"id": str(row[key])}
            if not by_record_id:
                item["idProperty"] = key
            item["properties"] = props
            if verb == "upsert":
                item["objectWriteTraceId"] = str(i)
            inputs.append(item)
        return [(f"/crm/v3/objects/{t}/batch/{verb}", {"inputs": inputs})]

    def describe_requests(self, request: WriteRequest) -> list[dict[str, Any]]:
        """The exact calls of :meth:`write_batch` (token masked); no network."""
        from conn.http import BearerToken
        from conn.http.dry_run import describe

        headers = {"Content-Type": "application/json",
                   **BearerToken(self.config["access_token"]).describe_headers()}
        base = self.config.get("base_url", DEFAULT_BASE_URL)
        calls: list[tuple[str, dict[str, Any] | None]]
        list_id = (self.config.get("lists") or {}).get(request.object.name)
        if list_id is not None:
            from conn_destination_hubspot import lists

            return [describe(m, path, json=body, headers=headers, base_url=base)
                    for m, path, body in lists.describe(request, list_id)]
        if request.operation == "event":
            from conn_destination_hubspot import events

            inputs, _ = events.event_inputs(request, self.config.get("event_names") or {})
            calls = [(events.SEND_BATCH, {"inputs": [item for _, item in inputs]})]
        elif request.operation == "erase":
            calls = [(GDPR_DELETE, body) for body in self._gdpr_bodies(request)]
        elif request.operation == "merge":
            calls = list(merge.describe(request))
        elif request.operation == "delete":
            t, key = request.object.name, request.match_key
            ids = [str(v) for v in request.records.column(0).to_pylist()]
            calls = []
            if key != RECORD_ID:
                calls.append((f"/crm/v3/objects/{t}/batch/read", self._read_body(ids, key)))
                ids = [f"<{RECORD_ID} of {key}={v}>" for v in ids]
            calls.append((f"/crm/v3/objects/{t}/batch/archive",
                          {"inputs": [{"id": v} for v in ids]}))
        else:
            calls = list(self._plan(request))
        return [describe("POST", path, json=body, headers=headers, base_url=base)
                for path, body in calls]

    # -- writing ---------------------------------------------------------------------------

    def write_batch(self, request: WriteRequest) -> WriteResult:
        """One batch call (at most 100 inputs); see the module docstring."""
        list_id = (self.config.get("lists") or {}).get(request.object.name)
        if list_id is not None:
            from conn_destination_hubspot import lists

            return lists.write(lambda m, path, body: self._post(path, body, m), request,
                               list_id)
        if request.operation == "delete":
            return self._archive(request)
        if request.operation == "erase":
            return self._gdpr_delete(request)
        if request.operation == "event":
            return self._send_events(request)
        from conn.http import write_with_split

        (path, body), = self._plan(request)
        inputs = body["inputs"]
        key = request.match_key

        def send(items: Sequence[dict[str, Any]]) -> WriteResult:
            return self._send_inputs(path, list(items), key)

        # Indices of the inputs are their positions; write_with_split reports them
        # relative to the list it was given, which is the whole batch here.
        return write_with_split(inputs, send)

    def merge_batch(self, request: WriteRequest) -> WriteResult:
        """Profile merges as contact merges: each pair's record ids read by the match key,
        then ``POST /crm/v3/objects/contacts/merge`` per pair; an absorbed contact
        HubSpot does not have counts as merged, a survivor it does not have is rejected
        (see :mod:`conn_destination_hubspot.merge`)."""
        return merge.merge(self._post, request, _error_body, _message)

    def _send_events(self, request: WriteRequest) -> WriteResult:
        """Custom behavioral event occurrences (see :mod:`conn_destination_hubspot.events`):
        ``204`` acknowledges the call; a ``400`` is split down to the occurrences HubSpot
        refuses, each rejected with its message."""
        from conn.http import BatchRejected, write_with_split

        from conn_destination_hubspot import events

        inputs, rejected = events.event_inputs(request, self.config.get("event_names") or {})

        def send(items: Sequence[tuple[int, dict[str, Any]]]) -> WriteResult:
            resp = self._post(events.SEND_BATCH, {"inputs": [item for _, item in items]})
            if resp.status_code < 300:
                return WriteResult()
            reason = f"HTTP {resp.status_code}: {_message(_error_body(resp))}"
            raise BatchRejected(reason, retryable=resp.status_code != 400,
                                status=resp.status_code)

        sent = write_with_split(inputs, send)
        # write_with_split numbers the inputs it was given; back to the request's rows.
        result = WriteResult(
            rejected=rejected + [replace(r, index=inputs[r.index][0]) for r in sent.rejected],
            pending=[inputs[i][0] for i in sent.pending], error=sent.error)
        result.rejected.sort(key=lambda r: r.index)
        return result

    def _send_inputs(self, path: str, inputs: list[dict[str, Any]], key: str) -> WriteResult:
        from conn.http import BatchRejected

        # Trace ids must name positions in *this* call (a split call holds a slice).
        sent = []
        for i, item in enumerate(inputs):
            item = dict(item)
            if "objectWriteTraceId" in item:
                item["objectWriteTraceId"] = str(i)
            sent.append(item)
        resp = self._post(path, {"inputs": sent})
        if resp.status_code == 400 and len(inputs) > 0:
            body = _error_body(resp)
            attributed = self._attribute(body, sent, key)
            if attributed:
                # HubSpot named the offending inputs: reject those, resend the rest.
                return self._reject_and_resend(path, inputs, key, attributed)
            raise BatchRejected(_message(body), retryable=False, status=400)
        if resp.status_code >= 400:
            body = _error_body(resp)
            raise BatchRejected(f"HTTP {resp.status_code}: {_message(body)}",
                                retryable=resp.status_code in (404, 409), status=resp.status_code)
        body = _error_body(resp) if resp.content else {}
        errors = body.get("errors") or []
        if not errors:
            return WriteResult()
        attributed = self._attribute(body, sent, key)
        result = WriteResult(rejected=[Rejection(i, reason, retryable=False)
                                       for i, reason in sorted(attributed.items())])
        unattributed = [e for e in errors if not self._error_indices(e, sent, key)]
        if unattributed:
            # Errors that name no input: every row not confirmed in ``results`` failed.
            confirmed = self._confirmed(body.get("results") or [], sent, key)
            reason = "; ".join(_message(e) for e in unattributed)
            for i in range(len(sent)):
                if i not in attributed and i not in confirmed:
                    result.rejected.append(Rejection(i, reason, retryable=True))
            result.rejected.sort(key=lambda r: r.index)
        return result

    def _reject_and_resend(self, path: str, inputs: list[dict[str, Any]], key: str,
                           attributed: dict[int, str]) -> WriteResult:
        from conn.http import excerpt

        rest = [i for i in range(len(inputs)) if i not in attributed]
        # The excerpts of this request, before the resend replaces it as the last one.
        result = WriteResult(rejected=[Rejection(i, r, retryable=False,
                                                 excerpt=excerpt(inputs[i]))
                                       for i, r in sorted(attributed.items())])
        if rest:
            part = self._send_inputs(path, [inputs[i] for i in rest], key)
            result.rejected.extend(replace(r, index=rest[r.index]) for r in part.rejected)
            result.pending.extend(rest[i] for i in part.pending)
        result.rejected.sort(key=lambda r: r.index)
        return result

    @staticmethod
    def _error_indices(err: Mapping[str, Any], sent: list[dict[str, Any]], key: str) -> list[int]:
        ctx = err.get("context") or {}
        out: list[int] = []
        for trace in ctx.get("objectWriteTraceId") or []:
            if str(trace).isdigit() and int(trace) < len(sent):
                out.append(int(trace))
        if out:
            return out
        ids = {str(v) for v in (ctx.get("ids") or ctx.get("id") or [])}
        if key != RECORD_ID:
            ids |= {str(v) for v in ctx.get(key) or []}
        return [i for i, item in enumerate(sent)
                if ("id" in item and str(item["id"]) in ids)
                or ("id" not in item and str(item["properties"].get(key)) in ids)]

    def _attribute(self, body: Mapping[str, Any], sent: list[dict[str, Any]],
                   key: str) -> dict[int, str]:
        """Map each error of a batch response to the inputs it names."""
        errors = list(body.get("errors") or [])
        if not errors and body.get("context"):
            errors = [body]
        out: dict[int, str] = {}
        for err in errors:
            for i in self._error_indices(err, sent, key):
                out.setdefault(i, _message(err))
        return out

    @staticmethod
    def _confirmed(results: list[Mapping[str, Any]], sent: list[dict[str, Any]],
                   key: str) -> set[int]:
        seen = set()
        for res in results:
            props = res.get("properties") or {}
            seen.add(str(res.get("id")))
            if props.get(key) is not None:
                seen.add(str(props[key]))
            if res.get("objectWriteTraceId") is not None:
                seen.add(f"trace:{res['objectWriteTraceId']}")
        out = set()
        for i, item in enumerate(sent):
            if f"trace:{i}" in seen or str(item.get("id")) in seen or \
                    str(item.get("properties", {}).get(key)) in seen:
                out.add(i)
        return out

    # -- mirror mode: archive --------------------------------------------------------------

    @staticmethod
    def _read_body(values: list[str], key: str) -> dict[str, Any]:
        return {"idProperty": key, "properties": [key], "propertiesWithHistory": [],
                "inputs": [{"id": v} for v in values]}

    def _archive(self, request: WriteRequest) -> WriteResult:
        """Archive records; a key HubSpot no longer has counts as archived."""
        t, key = request.object.name, request.match_key
        values = [None if v is None else str(v)
                  for v in request.records.column(0).to_pylist()]
        result = WriteResult()
        record_ids: dict[int, str] = {}
        if key == RECORD_ID:
            record_ids = {i: v for i, v in enumerate(values) if v}
        else:
            wanted = sorted({v for v in values if v})
            if wanted:
                resp = self._post(f"/crm/v3/objects/{t}/batch/read",
                                  self._read_body(wanted, key))
                if resp.status_code >= 400 and resp.status_code != 404:
                    raise ConnError(f"HubSpot batch read for archiving failed (HTTP "
                                    f"{resp.status_code}): {_message(_error_body(resp))}")
                found: dict[str, str] = {}
                for res in (_error_body(resp).get("results") or []) if resp.content else []:
                    val = (res.get("properties") or {}).get(key)
                    if val is not None:
                        found[str(val).lower() if key == "email" else str(val)] = str(res["id"])
                for i, v in enumerate(values):
                    norm = (v.lower() if key == "email" else v) if v else None
                    if norm in found:
                        record_ids[i] = found[norm]
        if record_ids:
            unique = sorted(set(record_ids.values()))
            resp = self._post(f"/crm/v3/objects/{t}/batch/archive",
                              {"inputs": [{"id": v} for v in unique]})
            if resp.status_code >= 400:
                reason = f"HTTP {resp.status_code}: {_message(_error_body(resp))}"
                result.rejected.extend(Rejection(i, reason, retryable=True)
                                       for i in sorted(record_ids))
        return result

    # -- erasure: GDPR delete --------------------------------------------------------------

    @staticmethod
    def _gdpr_bodies(request: WriteRequest) -> list[dict[str, Any] | None]:
        """One GDPR-delete body per record (None for a null key: nothing to erase)."""
        if request.object.name != "contacts":
            raise ConnError(f"hubspot: {request.object.name} declare no erasure; only "
                            "contacts have HubSpot's GDPR delete")
        key = request.match_key
        out: list[dict[str, Any] | None] = []
        for v in request.records.column(0).to_pylist():
            if v is None:
                out.append(None)
            elif key == RECORD_ID:
                out.append({"objectId": str(v)})
            else:
                out.append({"objectId": str(v), "idProperty": key})
        return out

    def _gdpr_delete(self, request: WriteRequest) -> WriteResult:
        """``POST .../contacts/gdpr-delete`` per contact on ``concurrency`` threads: 204
        and 404 (not there: already erased) acknowledge; another 4xx rejects that contact
        with HubSpot's message; refused credentials, the daily cap and exhausted retries
        raise in :meth:`_post` (the contact and those not yet sent stay pending)."""
        from conn.http import write_each

        def one(body: dict[str, Any] | None) -> str | None:
            if body is None:
                return None
            resp = self._post(GDPR_DELETE, body)
            if resp.status_code < 400 or resp.status_code == 404:
                return None
            return f"HTTP {resp.status_code}: {_message(_error_body(resp))}"

        return write_each(self._gdpr_bodies(request), one,
                          workers=int(self.config.get("concurrency", 2)))
