"""Profile merges as HubSpot contact merges (``Capabilities.merges`` of ``contacts``).

When ``conn profiles build`` merges two people, a sync of the profile set to
``contacts`` hands :meth:`HubSpotDestination.merge_batch` pairs of match values (the
absorbed profile's contact, the survivor's). Merging keeps the absorbed contact's
history (e-mails sent, notes, deals) on the survivor, which archiving would not.

1. **Resolve** the match values to record ids: ``POST /crm/v3/objects/contacts/
   batch/read`` with ``idProperty`` (the sync's match key) and ``inputs: [{"id": ...}]``,
   at most 100 a call (none when matching on ``hs_object_id``).
2. **Merge** each pair: ``POST /crm/v3/objects/contacts/merge`` with
   ``{"primaryObjectId": <survivor's id>, "objectIdToMerge": <absorbed id>}``, one pair
   a request, one request at a time (two pairs may share a survivor, and HubSpot locks
   a record while it is written). HubSpot answers ``200`` with the merged contact.
   Documented at https://developers.hubspot.com/docs/api-reference/crm-contacts-v3/
   basic/post-crm-v3-objects-contacts-merge ("Merge two contacts"; the model
   ``PublicMergeInput`` of HubSpot's OpenAPI files).

Outcomes per pair:

* merged (``200``): acknowledged.
* the absorbed contact is not in HubSpot (not found by the batch read, or ``404`` from
  the merge): acknowledged, the duplicate is gone (merged or deleted by hand).
* both values lead to one contact (HubSpot merged them already): acknowledged.
* the survivor is not in HubSpot: **rejected** (retryable) with that reason and nothing
  sent; the absorbed contact stays, and the next run tries again. It is not deleted
  instead: deleting loses the history a merge is there to keep, and a survivor the sync
  delivered (its state says so) missing from HubSpot is for a person to look at (say
  it was deleted in HubSpot: ``conn sync --full-resync`` sends it again).
* another ``4xx`` (e.g. HubSpot's limit of 250 merged identities a contact): rejected
  with HubSpot's message, tried again next run.
* ``429``, ``5xx`` and ``423`` are retried by the destination's client (:meth:`_post`);
  refused credentials and the daily cap leave the pair and those after it pending.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from conn.destination import WriteRequest, WriteResult
from conn.errors import ConnError

if TYPE_CHECKING:
    import httpx

#: The merge API of ``contacts`` (Capabilities.merges) and its path.
MERGES = "HubSpot contact merge (POST /crm/v3/objects/contacts/merge)"
MERGE = "/crm/v3/objects/contacts/merge"
READ = "/crm/v3/objects/contacts/batch/read"
#: Inputs per batch read (HubSpot's batch limit).
READ_LIMIT = 100
RECORD_ID = "hs_object_id"

Post = Callable[[str, Any], "httpx.Response"]


def read_body(values: Sequence[str], key: str) -> dict[str, Any]:
    """A batch read of contacts by ``key`` (the body the archive path sends too)."""
    return {"idProperty": key, "properties": [key], "propertiesWithHistory": [],
            "inputs": [{"id": v} for v in values]}


def _norm(value: str, key: str) -> str:
    # HubSpot stores e-mails in lower case and matches them regardless of case.
    return value.lower() if key == "email" else value


def record_ids(post: Post, key: str, values: Sequence[str],
               body_of: Callable[[httpx.Response], Mapping[str, Any]]) -> dict[str, str]:
    """HubSpot's record id of each contact whose ``key`` is one of ``values`` (those it
    does not have are left out), 100 values a batch read."""
    if key == RECORD_ID:
        return {v: v for v in values}
    wanted = sorted({v for v in values if v})
    found: dict[str, str] = {}
    for at in range(0, len(wanted), READ_LIMIT):
        resp = post(READ, read_body(wanted[at:at + READ_LIMIT], key))
        if resp.status_code >= 400 and resp.status_code != 404:
            raise ConnError(f"HubSpot batch read for merging failed (HTTP "
                            f"{resp.status_code}): {body_of(resp).get('message')}")
        for res in (body_of(resp).get("results") or []) if resp.content else []:
            val = (res.get("properties") or {}).get(key)
            if val is not None and res.get("id") is not None:
                found[_norm(str(val), key)] = str(res["id"])
    return {v: found[_norm(v, key)] for v in values if v and _norm(v, key) in found}


def _pairs(request: WriteRequest) -> list[tuple[str | None, str | None]]:
    if request.object.name != "contacts":
        raise ConnError(f"hubspot: {request.object.name} declare no merge; only contacts "
                        "are merged")
    absorbed, survivors = request.merge_pairs()
    return [(None if a is None else str(a), None if s is None else str(s))
            for a, s in zip(absorbed.to_pylist(), survivors.to_pylist(), strict=True)]


def merge(post: Post, request: WriteRequest,
          body_of: Callable[[httpx.Response], Mapping[str, Any]],
          message: Callable[[Mapping[str, Any]], str]) -> WriteResult:
    """Merge the request's pairs (see the module docstring); ``post`` sends with the
    destination's retries and error handling, ``body_of`` and ``message`` read HubSpot's
    answers."""
    from conn.http import write_each

    key = request.match_key
    pairs = _pairs(request)
    ids = record_ids(post, key, [v for pair in pairs for v in pair if v], body_of)

    def one(pair: tuple[str | None, str | None]) -> str | None:
        absorbed, survivor = pair
        gone = ids.get(absorbed) if absorbed else None
        if gone is None:
            return None  # the duplicate is not there (any more): done
        keep = ids.get(survivor) if survivor else None
        if keep is None:
            return (f"the surviving contact ({key}={survivor}) is not in HubSpot, so "
                    f"{key}={absorbed} cannot be merged into it; it stays until the "
                    "survivor is back (conn sync --full-resync sends it again)")
        if keep == gone:
            return None  # one contact already
        resp = post(MERGE, {"primaryObjectId": keep, "objectIdToMerge": gone})
        if resp.status_code < 400 or resp.status_code == 404:
            return None
        return f"HTTP {resp.status_code}: {message(body_of(resp))}"

    return write_each(pairs, one, workers=1, retryable=True)


def describe(request: WriteRequest) -> list[tuple[str, dict[str, Any]]]:
    """(path, body) of the calls :func:`merge` sends, for ``--dry-run`` (record ids
    shown as placeholders unless matching on ``hs_object_id``)."""
    key = request.match_key
    pairs = _pairs(request)
    calls: list[tuple[str, dict[str, Any]]] = []
    values = sorted({v for pair in pairs for v in pair if v})

    def rid(v: str | None) -> str:
        return str(v) if key == RECORD_ID else f"<{RECORD_ID} of {key}={v}>"

    if key != RECORD_ID:
        calls += [(READ, read_body(values[at:at + READ_LIMIT], key))
                  for at in range(0, len(values), READ_LIMIT)]
    calls += [(MERGE, {"primaryObjectId": rid(s), "objectIdToMerge": rid(a)})
              for a, s in pairs if a and s]
    return calls
