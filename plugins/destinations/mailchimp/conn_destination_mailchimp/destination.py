"""The ``mailchimp`` destination: members of one Mailchimp audience (list).

Upsert (``upsert`` and ``mirror`` modes) is two steps per batch of at most 500 records:

1. ``POST /lists/{list_id}`` with ``{"members": [...], "update_existing": false}``: every
   new address is created with its record's ``status`` (or ``status_if_new`` from the
   config). Existing members are **not** touched by this call; Mailchimp lists them in the
   response's ``errors`` as already being list members.
2. For each of those, ``PUT /lists/{list_id}/members/{subscriber_hash}`` with the merge
   fields and ``status_if_new`` but **without** ``status``, so an existing member keeps
   the status they chose: someone who unsubscribed is never re-subscribed. The only
   status ever sent for an existing member is ``unsubscribed`` (a record saying so, with
   ``apply_unsubscribes: true``). Tags of existing members are added with
   ``POST .../members/{hash}/tags`` (never removed).

Replaying either step is harmless (a lost reply to step 1 makes the retry report the
members as existing, which step 2 then updates), so retries after 429/5xx cannot
duplicate or re-subscribe anyone.

``insert`` mode creates new members only (existing ones are acknowledged unchanged).
Deletes (``mirror``) archive the member (``DELETE .../members/{hash}``; 404 counts as
done) or, with ``delete_mode: permanent``, delete it permanently. With ``tag`` (an
audience as a tag) every member written gets that tag and a delete removes only the tag
(``POST .../members/{hash}/tags`` with ``"status": "inactive"``; 404 counts as done):
the member stays in the list, and the tag holds exactly the synced set.

Erasure (``erase``, ``conn forget``) always deletes permanently, whatever ``delete_mode``
says: ``POST /lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent``, one
call per member, which "deletes all personally identifiable information related to a list
member" and makes re-importing the address impossible
(https://mailchimp.com/developer/marketing/api/list-members/delete-list-member/). A 404
(not, or no longer, in the audience) counts as erased: nothing of the person is left
there, and a second erase must not fail.

Per-record failures come from the batch response's ``errors`` array
(``email_address``, ``error``, ``error_code``, ``field``, ``field_message``) and from the
error document of a refused PUT; they are rejections that are not retried (the data must
change). 401/403/404 on the list leave the batch pending with Mailchimp's message.

Mailchimp allows 10 simultaneous connections per account: ``concurrency`` batches run at
once and each uses at most ``max_connections // concurrency`` connections for its
per-member calls; the HTTP pool never opens more than ``max_connections``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from conn import secrets
from conn.destination import (
    Capabilities,
    Destination,
    ObjectInfo,
    Rejection,
    WriteRequest,
    WriteResult,
)
from conn.errors import CheckFailed, ConfigError, ConnError
from conn.http import LazyClient
from conn.http.config import client_from_config, flat_retry_policy, rate_limit_from_config

if TYPE_CHECKING:
    import httpx
    from conn.http import HttpClient

log = logging.getLogger("conn.destination.mailchimp")

#: Mailchimp's documented limit of members per batch subscribe call.
BATCH_LIMIT = 500
#: Mailchimp's documented limit of simultaneous connections per account.
MAX_CONNECTIONS = 10
STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
#: Error codes/messages of the batch call meaning "this address is already a member".
EXISTS_CODES = ("ERROR_CONTACT_EXISTS",)
EXISTS_TEXT = "already a list member"
#: Member attributes sent as they are (besides e-mail, status, merge fields and tags).
PLAIN_FIELDS = ("email_type", "language", "vip", "ip_signup", "timestamp_signup", "ip_opt",
                "timestamp_opt")
DEFAULT_MERGE_FIELDS: dict[str, dict[str, Any]] = {
    "FNAME": {"type": "string", "description": "First name (merge tag FNAME)."},
    "LNAME": {"type": "string", "description": "Last name (merge tag LNAME)."},
    "PHONE": {"type": "string", "description": "Phone (merge tag PHONE)."},
    "BIRTHDAY": {"type": "string", "pattern": "^[0-9]{2}/[0-9]{2}$",
                 "description": "Birthday as MM/DD (merge tag BIRTHDAY)."},
}
#: The personal-data kind of the default merge fields (the member fields' kinds are in
#: objects/members.schema.json).
MERGE_PERSONAL = {"FNAME": "first_name", "LNAME": "last_name", "PHONE": "phone",
                  "BIRTHDAY": "dob"}


CONFIG_SCHEMA = json.loads(resources.files(__package__).joinpath("config.schema.json")
                           .read_text(encoding="utf-8"))


#: The erasure API ``members`` declares (Capabilities.erasure),
#: https://mailchimp.com/developer/marketing/api/list-members/delete-list-member/
ERASURE = ("Mailchimp permanent delete (POST /lists/{list_id}/members/{subscriber_hash}"
           "/actions/delete-permanent)")


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: MD5 hex of the trimmed, lowercased e-mail address."""
    return hashlib.md5(email.strip().lower().encode("utf-8")).hexdigest()


def datacenter(api_key: str) -> str:
    """The datacenter suffix of an API key (``...-us6`` → ``us6``)."""
    _, sep, dc = api_key.rpartition("-")
    if not sep or not dc.isalnum():
        raise ConfigError("mailchimp: api_key must end with its datacenter, e.g. '-us6'",
                          path="config.api_key")
    return dc


def _jsonable(value: Any) -> Any:
    """A JSON value for a member attribute (dates as ISO 8601, decimals as numbers)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def _merge_value(value: Any) -> Any:
    """A merge-field value as Mailchimp types them: a string, a number or an address
    object (https://mailchimp.com/developer/marketing/docs/merge-fields/); there is no
    boolean merge field, so booleans go as the text ``"true"``/``"false"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _jsonable(value)


def _problem(resp: httpx.Response) -> str:
    """Mailchimp's error document (``title``, ``detail``, ``errors``) as one line."""
    from conn.http import body_excerpt

    try:
        doc = resp.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return f"HTTP {resp.status_code}: {body_excerpt(resp, 300)}".rstrip(": ")
    parts = [str(doc.get("title") or f"HTTP {resp.status_code}")]
    if doc.get("detail"):
        parts.append(str(doc["detail"]))
    for err in doc.get("errors") or []:
        if isinstance(err, dict):
            parts.append(f"{err.get('field') or 'member'}: {err.get('message')}")
    return secrets.redact(" - ".join(parts))


class MailchimpDestination(LazyClient, Destination):
    """Mailchimp audience members (see the module docstring)."""

    name: ClassVar[str] = "mailchimp"
    #: What says where it writes (compared between runs; see Destination.target_identity).
    identity_keys: ClassVar[tuple[str, ...] | None] = ("base_url", "list_id", "tag")
    description: ClassVar[str] = (
        "Mailchimp audience members: batch upsert that never re-subscribes, merge fields, "
        "tags, archive for mirror")
    config_schema: ClassVar[dict[str, Any]] = CONFIG_SCHEMA

    def __init__(self, config: Mapping[str, Any] | None = None, *, instance: str = "",
                 project_dir: str | Path | None = None) -> None:
        super().__init__(config, instance=instance, project_dir=project_dir)
        c = self.config
        self.api_key: str = c.get("api_key", "")
        secrets.register(self.api_key)
        self.list_id: str = str(c.get("list_id", ""))
        self.status_if_new: str = c.get("status_if_new", "subscribed")
        self.apply_unsubscribes = bool(c.get("apply_unsubscribes", True))
        self.delete_mode: str = c.get("delete_mode", "archive")
        #: The audience tag (see the module docstring), or None.
        self.tag: str | None = c.get("tag")
        self.merge_types: dict[str, str] = dict(c.get("merge_fields") or {})
        self.max_connections = min(MAX_CONNECTIONS, int(c.get("max_connections",
                                                              MAX_CONNECTIONS)))
        self.concurrency = max(1, min(int(c.get("concurrency", 2)), self.max_connections))
        #: Connections one batch may use for its per-member calls.
        self.member_workers = max(1, self.max_connections // self.concurrency)
        self.rate_limit = rate_limit_from_config(c.get("rate_limit"))
        #: Optional overrides for tests (``clock``, ``sleep``, ``seed``, ``transport``...).
        self.client_options: dict[str, Any] = {}

    # -- plumbing --

    @property
    def base_url(self) -> str:
        """The API root, ``https://{dc}.api.mailchimp.com/3.0`` unless configured."""
        if self.config.get("base_url"):
            return str(self.config["base_url"]).rstrip("/")
        return f"https://{datacenter(self.api_key)}.api.mailchimp.com/3.0"

    def make_client(self) -> HttpClient:
        """The HTTP client every worker shares (one pool and limiter), made on first use."""
        from conn.http import BasicAuth

        return client_from_config(
            self.config, self.base_url, auth=BasicAuth("conn", self.api_key),
            headers={"Accept": "application/json"}, timeout=60,
            retry=flat_retry_policy(self.config, max_retry_wait=300),
            rate_limit=self.rate_limit, name=self.instance,
            max_connections=self.max_connections, **self.client_options)

    def _list_path(self, suffix: str = "") -> str:
        return f"lists/{self.list_id}{suffix}"

    def _member_path(self, email: str, suffix: str = "") -> str:
        return self._list_path(f"/members/{subscriber_hash(email)}{suffix}")

    # -- duties --

    def objects(self) -> list[ObjectInfo]:
        """One object, ``members``, matched by ``email_address``."""
        merge = {tag: dict(spec) for tag, spec in DEFAULT_MERGE_FIELDS.items()}
        for tag, jtype in self.merge_types.items():
            merge[tag] = {"type": jtype, "description": f"Merge field {tag}."}
        caps = Capabilities(batch_size=BATCH_LIMIT, concurrency=self.concurrency,
                            modes=frozenset({"upsert", "insert", "mirror"}),
                            supports_delete=True, rate_limit=self.rate_limit,
                            erasure=ERASURE)
        members = ObjectInfo.from_package(__package__, "members", caps)
        return [replace(members.with_fields(merge, personal=MERGE_PERSONAL),
                        description=f"Members of Mailchimp audience {self.list_id}")]

    def check(self) -> None:
        """``GET /ping`` (credentials, datacenter) then ``GET /lists/{list_id}``, one
        attempt each (a check should answer at once)."""
        from conn.errors import RetryLater
        from conn.http import NO_RETRY

        try:
            resp = self.client.get("ping", retry=NO_RETRY)
            if resp.status_code >= 400:
                raise CheckFailed(f"mailchimp {self.instance!r}: {_problem(resp)}")
            resp = self.client.get(self._list_path(), params={"fields": "id,name"},
                                   retry=NO_RETRY)
            if resp.status_code >= 400:
                raise CheckFailed(f"mailchimp {self.instance!r}: audience "
                                  f"{self.list_id!r}: {_problem(resp)}")
        except (RetryLater, ConfigError) as exc:
            raise CheckFailed(f"mailchimp {self.instance!r}: "
                              f"{getattr(exc, 'reason', exc)}") from None

    # -- building payloads --

    def member(self, record: Mapping[str, Any], *, new: bool) -> dict[str, Any]:
        """The member JSON for ``record``: for the batch call (``new``: carries ``status``)
        or for the PUT of an existing member (``status_if_new``, no ``status`` unless the
        record unsubscribes and ``apply_unsubscribes`` is on)."""
        email = str(record["email_address"]).strip()
        wanted = record.get("status") or self.status_if_new
        out: dict[str, Any] = {"email_address": email}
        if new:
            out["status"] = wanted
        else:
            out["status_if_new"] = wanted
            if wanted == "unsubscribed" and self.apply_unsubscribes:
                out["status"] = "unsubscribed"
        for name in PLAIN_FIELDS:
            if record.get(name) is not None:
                out[name] = _jsonable(record[name])
        merge = {tag: _merge_value(v) for tag, v in record.items()
                 if v is not None and self._is_merge_tag(tag)}
        if merge:
            out["merge_fields"] = merge
        tags = self.tags_of(record)
        if tags and new:
            out["tags"] = tags
        return out

    def _is_merge_tag(self, name: str) -> bool:
        return name in DEFAULT_MERGE_FIELDS or name in self.merge_types

    @staticmethod
    def _tags(record: Mapping[str, Any]) -> list[str]:
        raw = record.get("tags")
        if raw is None:
            return []
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        return [str(t).strip() for t in items if t is not None and str(t).strip()]

    def tags_of(self, record: Mapping[str, Any]) -> list[str]:
        """Every tag a written member gets: the record's ``tags`` and the audience tag."""
        tags = self._tags(record)
        return [*tags, self.tag] if self.tag and self.tag not in tags else tags

    def _batch_body(self, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return {"members": [self.member(r, new=True) for r in records],
                "update_existing": False}

    def _batch_params(self) -> dict[str, str]:
        return ({"skip_merge_validation": "true"}
                if self.config.get("skip_merge_validation") else {})

    # -- writing --

    def write_batch(self, request: WriteRequest) -> WriteResult:
        """Upsert/insert (batch create, then PUT existing members), archive (or delete
        permanently) for ``delete``, permanent delete for ``erase``."""
        records = request.to_pylist()
        if request.operation == "delete" and self.tag:
            return self._each([{"email_address": r.get(request.match_key)} for r in records],
                              self._untag_member)
        if request.operation in ("delete", "erase"):
            return self._delete(records, request.match_key,
                                permanent=request.operation == "erase"
                                or self.delete_mode == "permanent")
        result = WriteResult()
        valid: list[int] = []
        seen: dict[str, int] = {}
        for i, rec in enumerate(records):
            email = rec.get("email_address")
            if not isinstance(email, str) or "@" not in email:
                result.rejected.append(Rejection(i, "email_address is missing or not an "
                                                    "e-mail address", retryable=False))
                continue
            h = subscriber_hash(email)
            if h in seen:
                result.rejected.append(Rejection(
                    i, f"same member as row {seen[h]} of this batch (e-mail addresses differ "
                       "only in case or blanks); sent again next run", retryable=True))
                continue
            seen[h] = i
            valid.append(i)
        if not valid:
            return result
        from conn.http import write_with_split

        batch_records = [records[i] for i in valid]
        existing: list[int] = []  # positions in batch_records

        def send(part: Sequence[tuple[int, Mapping[str, Any]]]) -> WriteResult:
            return self._send_batch(part, existing)

        created = write_with_split(list(enumerate(batch_records)), send)
        result.extend(_remap(created, valid))
        if existing and request.operation != "insert":
            updated = self._update_existing([batch_records[p] for p in existing])
            result.extend(_remap(updated, [valid[p] for p in existing]))
        result.rejected.sort(key=lambda r: r.index)
        result.pending.sort()
        return result

    def _send_batch(self, part: Sequence[tuple[int, Mapping[str, Any]]],
                    existing: list[int]) -> WriteResult:
        """One batch subscribe call for ``part`` ((position, record) pairs); appends the
        positions of already-existing members to ``existing``."""
        from conn.http import BatchRejected, HttpClient

        body = self._batch_body([r for _, r in part])
        resp = self.client.post(self._list_path(), json=body, params=self._batch_params())
        if resp.status_code == 400:
            raise BatchRejected(_problem(resp), status=400)
        if resp.status_code >= 400:
            HttpClient.raise_for_status(resp)
        try:
            doc = resp.json()
        except ValueError:
            raise ConnError(f"mailchimp {self.instance!r}: batch subscribe answered "
                            "without JSON") from None
        index = {str(r["email_address"]).strip().lower(): k for k, (_, r) in enumerate(part)}
        out = WriteResult()
        for err in doc.get("errors") or []:
            k = index.get(str(err.get("email_address") or "").strip().lower())
            if k is None:
                log.warning("mailchimp reported an error for an address not in the batch")
                continue
            text = str(err.get("error") or "")
            if err.get("error_code") in EXISTS_CODES or EXISTS_TEXT in text.lower():
                existing.append(part[k][0])
                continue
            reason = text or str(err.get("error_code") or "rejected by Mailchimp")
            if err.get("field"):
                reason += f" ({err['field']}: {err.get('field_message') or 'invalid'})"
            out.rejected.append(Rejection(k, secrets.redact(reason), retryable=False))
        return out

    def _update_existing(self, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        """PUT each existing member (no ``status``), then add its tags."""
        return self._each(records, self._put_member)

    def _put_member(self, record: Mapping[str, Any]) -> str | None:
        from conn.http import HttpClient

        email = str(record["email_address"])
        resp = self.client.put(self._member_path(email), json=self.member(record, new=False))
        if resp.status_code in (400, 422):
            return _problem(resp)
        if resp.status_code >= 400:
            HttpClient.raise_for_status(resp)
        tags = self.tags_of(record)
        if tags:
            resp = self.client.post(self._member_path(email, "/tags"), json={
                "tags": [{"name": t, "status": "active"} for t in tags]})
            if resp.status_code in (400, 422):
                return f"member updated but tags refused: {_problem(resp)}"
            if resp.status_code >= 400:
                HttpClient.raise_for_status(resp)
        return None

    def _delete(self, records: Sequence[Mapping[str, Any]], key: str, *,
                permanent: bool) -> WriteResult:
        emails = [{"email_address": r.get(key)} for r in records]
        return self._each(emails, lambda r: self._delete_member(r, permanent))

    def _delete_member(self, record: Mapping[str, Any], permanent: bool) -> str | None:
        """Archive or permanently delete one member: 2xx and 404 (not, or no longer, in
        the audience) are done; 400/405/422 reject it with Mailchimp's problem detail;
        anything else (401/403, retries exhausted) raises: it stays pending."""
        from conn.http import HttpClient

        email = record.get("email_address")
        if not isinstance(email, str) or not email.strip():
            return "no e-mail address to delete"
        if permanent:
            resp = self.client.post(self._member_path(email, "/actions/delete-permanent"))
        else:
            resp = self.client.delete(self._member_path(email))
        if resp.status_code == 404 or resp.status_code < 300:
            return None  # archived now, or not (or no longer) in the audience
        if resp.status_code in (400, 405, 422):
            return _problem(resp)
        HttpClient.raise_for_status(resp)
        return None

    def _untag_body(self) -> dict[str, Any]:
        return {"tags": [{"name": self.tag, "status": "inactive"}]}

    def _untag_member(self, record: Mapping[str, Any]) -> str | None:
        """Remove the audience tag from one member (``POST .../tags``, ``inactive``):
        2xx and 404 (not, or no longer, in the audience: nobody holds the tag) are done;
        400/422 reject it with Mailchimp's detail; anything else raises (pending)."""
        from conn.http import HttpClient

        email = record.get("email_address")
        if not isinstance(email, str) or not email.strip():
            return "no e-mail address to untag"
        resp = self.client.post(self._member_path(email, "/tags"), json=self._untag_body())
        if resp.status_code == 404 or resp.status_code < 300:
            return None
        if resp.status_code in (400, 422):
            return _problem(resp)
        HttpClient.raise_for_status(resp)
        return None

    def _each(self, records: Sequence[Mapping[str, Any]],
              call: Callable[[Mapping[str, Any]], str | None]) -> WriteResult:
        """Run ``call`` per record on ``member_workers`` threads (see
        :func:`conn.http.write_each`): a string result is a rejection, an exception
        leaves that record and every one not yet started pending."""
        from conn.http import write_each

        return write_each(records, call, workers=self.member_workers)

    # -- dry run --

    def describe_requests(self, request: WriteRequest) -> list[dict[str, Any]]:
        """The exact requests :meth:`write_batch` would send (API key masked); the PUT of
        an existing member is listed with the condition under which it is sent."""
        records = request.to_pylist()
        client = self.client
        out: list[dict[str, Any]] = []
        if request.operation in ("delete", "erase"):
            for r in records:
                email = str(r.get(request.match_key) or "")
                if request.operation == "delete" and self.tag:
                    out.append(client.describe("POST", self._member_path(email, "/tags"),
                                               json=self._untag_body()))
                elif self.delete_mode == "permanent" or request.operation == "erase":
                    out.append(client.describe("POST", self._member_path(
                        email, "/actions/delete-permanent")))
                else:
                    out.append(client.describe("DELETE", self._member_path(email)))
            return out
        good = [r for r in records if isinstance(r.get("email_address"), str)]
        out.append(client.describe("POST", self._list_path(), json=self._batch_body(good),
                                   params=self._batch_params()))
        if request.operation == "insert":
            return out
        for r in good:
            d = client.describe("PUT", self._member_path(r["email_address"]),
                                json=self.member(r, new=False))
            d["condition"] = "only if the batch call reports the member as existing"
            out.append(d)
            if self.tags_of(r):
                t = client.describe("POST", self._member_path(r["email_address"], "/tags"),
                                    json={"tags": [{"name": x, "status": "active"}
                                                   for x in self.tags_of(r)]})
                t["condition"] = "only after that PUT"
                out.append(t)
        return out


def _remap(result: WriteResult, positions: Sequence[int]) -> WriteResult:
    """Indices of ``result`` (positions in a sub-list) mapped back to batch indices."""
    return WriteResult([replace(r, index=positions[r.index]) for r in result.rejected],
                       [positions[i] for i in result.pending], result.error)
