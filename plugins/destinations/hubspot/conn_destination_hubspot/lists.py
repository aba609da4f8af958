"""HubSpot contact lists as objects: an audience kept as a list's members.

Each entry of the destination's ``lists`` setting (``{object name: list id}``) is an
object whose records are contacts matched by ``email`` (or ``hs_object_id``). The list
must be a ``MANUAL`` (static) list: HubSpot's membership endpoints "only work for lists
that have a processingType of MANUAL or SNAPSHOT"
(https://developers.hubspot.com/docs/api-reference/legacy/crm/lists/memberships/add-to-list).

- ``upsert`` (joining): the contacts' record ids are read with
  ``POST /crm/v3/objects/contacts/batch/read`` (``idProperty: email``), then
  ``PUT /crm/v3/lists/{listId}/memberships/add`` with the ids (a JSON array of strings).
  A contact HubSpot does not have is rejected with a retryable reason (sync contacts
  first, e.g. a ``contacts`` sync of the same rows): it is tried again next run.
- ``delete`` (leaving, mirror): ids read the same way, then
  ``PUT /crm/v3/lists/{listId}/memberships/remove``. A contact HubSpot does not have is
  not in the list: done.

The answer is ``200`` with ``recordIdsMissing``, ``recordIdsRemoved`` and
``recordsIdsAdded`` (sic, the documented field name); adding an existing member or
removing a non-member is a no-op, so both calls are safe to replay. The contact itself is
never changed or archived.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from conn.destination import Capabilities, ObjectInfo, Rejection, WriteRequest, WriteResult
from conn.errors import ConnError

if TYPE_CHECKING:
    import httpx

#: Contacts per call (batch/read takes at most 100 inputs).
BATCH_LIMIT = 100
RECORD_ID = "hs_object_id"
_FIELDS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "email": {"type": ["string", "null"], "format": "email",
                  "description": "the contact's e-mail (idProperty=email)"},
        RECORD_ID: {"type": ["string", "null"], "description": "the contact's record id"},
    },
    "additionalProperties": True,
}

Send = Callable[[str, str, Any], "httpx.Response"]


def list_objects(lists: Mapping[str, str], caps: Capabilities) -> list[ObjectInfo]:
    """One object per configured list: contacts by ``email`` or ``hs_object_id``; any
    other mapped field is ignored (the membership is all that is written)."""
    from dataclasses import replace

    list_caps = replace(caps, batch_size=BATCH_LIMIT, modes=frozenset({"upsert", "mirror"}),
                        supports_delete=True, erasure="")
    return [ObjectInfo(name, _FIELDS, ("email", RECORD_ID), list_caps,
                       personal={"email": "email"},
                       description=f"Members of HubSpot static list {list_id}")
            for name, list_id in lists.items()]


def membership_path(list_id: str, action: str) -> str:
    """``/crm/v3/lists/{listId}/memberships/{add|remove}``."""
    return f"/crm/v3/lists/{list_id}/memberships/{action}"


def resolve(send: Send, request: WriteRequest) -> tuple[list[str | None], dict[int, str]]:
    """The request's match-key values and, by row, the record id HubSpot has for it (a
    batch read by e-mail; record ids are taken as they are)."""
    key = request.match_key
    values = [None if v is None else str(v) for v in request.records.column(key).to_pylist()]
    if key == RECORD_ID:
        return values, {i: v for i, v in enumerate(values) if v}
    wanted = sorted({v for v in values if v})
    found: dict[str, str] = {}
    if wanted:
        resp = send("POST", "/crm/v3/objects/contacts/batch/read",
                    {"idProperty": key, "properties": [key], "propertiesWithHistory": [],
                     "inputs": [{"id": v} for v in wanted]})
        if resp.status_code >= 400 and resp.status_code != 404:
            raise ConnError(f"HubSpot batch read of contacts failed (HTTP "
                            f"{resp.status_code}): {resp.text[:300]}")
        doc = resp.json() if resp.content else {}
        for res in doc.get("results") or []:
            val = (res.get("properties") or {}).get(key)
            if val is not None:
                found[_norm(str(val), key)] = str(res["id"])
    ids = {i: found[_norm(v, key)] for i, v in enumerate(values)
           if v and _norm(v, key) in found}
    return values, ids


def _norm(value: str, key: str) -> str:
    return value.lower() if key == "email" else value


def write(send: Send, request: WriteRequest, list_id: str) -> WriteResult:
    """Add (upsert) or remove (delete) the request's contacts (module docstring)."""
    if request.operation not in ("upsert", "delete"):
        raise ConnError(f"hubspot: list object {request.object.name!r} takes upsert and "
                        f"delete (mode upsert or mirror), not {request.operation!r}")
    values, ids = resolve(send, request)
    adding = request.operation == "upsert"
    result = WriteResult()
    if adding:
        result.rejected = [
            Rejection(i, f"no HubSpot contact with {request.match_key}={v!r} yet; sync the "
                         "contact first (it is tried again next run)", retryable=True)
            for i, v in enumerate(values) if i not in ids]
    unique = sorted(set(ids.values()))
    if not unique:
        return result
    resp = send("PUT", membership_path(list_id, "add" if adding else "remove"), unique)
    if resp.status_code >= 400:
        raise ConnError(f"HubSpot list {list_id}: membership {'add' if adding else 'remove'}"
                        f" failed (HTTP {resp.status_code}): {resp.text[:300]} (is it a "
                        "MANUAL list, and does the token have the lists scopes?)")
    doc = resp.json() if resp.content else {}
    missing = {str(x) for x in doc.get("recordIdsMissing") or []}
    if adding and missing:
        from conn.http import excerpt  # the PUT just answered: this contact's part of it

        result.rejected += [Rejection(i, f"HubSpot reports contact {rid} missing; tried again "
                                         "next run", retryable=True, excerpt=excerpt(rid))
                            for i, rid in ids.items() if rid in missing]
        result.rejected.sort(key=lambda r: r.index)
    return result


def describe(request: WriteRequest, list_id: str) -> list[tuple[str, str, Any]]:
    """(method, path, body) of the calls :func:`write` sends, record ids unresolved."""
    key = request.match_key
    values: Sequence[Any] = request.records.column(key).to_pylist()
    action = "add" if request.operation == "upsert" else "remove"
    calls: list[tuple[str, str, Any]] = []
    if key != RECORD_ID:
        calls.append(("POST", "/crm/v3/objects/contacts/batch/read",
                      {"idProperty": key, "properties": [key], "propertiesWithHistory": [],
                       "inputs": [{"id": str(v)} for v in values if v is not None]}))
        values = [f"<{RECORD_ID} of {key}={v}>" for v in values if v is not None]
    calls.append(("PUT", membership_path(list_id, action), [str(v) for v in values]))
    return calls
