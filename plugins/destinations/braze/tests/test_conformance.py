"""conn's conformance suite for the ``braze`` destination (conn.testing.conformance),
against conn's fault server emulating Braze's ``/users/track`` and ``/users/delete`` as
documented (bearer REST key, per-object ``errors`` with ``index``)."""

from __future__ import annotations

from typing import Any

from conn.testing.conformance import SuiteContext, destination_suite
from conn.testing.http import FaultServer, RecordedRequest, Reply
from conn_destination_braze.destination import BrazeDestination

API_KEY = "conf-braze-rest-key-2c9d"
REJECTED = "u-rejected"


def emulate(server: FaultServer) -> None:
    """Braze as documented: 401 without the key, 400 for an empty payload, 201 with
    ``errors`` for refused objects; users stored by ``external_id``."""

    def authorised(req: RecordedRequest) -> bool:
        return req.header("Authorization") == f"Bearer {API_KEY}"

    def track(req: RecordedRequest, srv: FaultServer) -> Reply:
        if not authorised(req):
            return Reply(401, json={"message": "Invalid API key"})
        body = req.json or {}
        items = [(name, i, obj) for name in ("attributes", "events")
                 for i, obj in enumerate(body.get(name) or [])]
        if not items:
            return Reply(400, json={"message": "Valid data must be provided in the "
                                               "'attributes', 'events', or 'purchases' fields."})
        errors = []
        for name, i, obj in items:
            if obj.get("external_id") == REJECTED:
                errors.append({"type": "'email' is not a valid email address",
                               "input_array": name, "index": i})
            elif name == "attributes":
                srv.store[str(obj.get("external_id"))] = obj
        return Reply(201, json={"message": "success", "errors": errors} if errors
                     else {"message": "success", "attributes_processed": len(items)})

    def delete(req: RecordedRequest, srv: FaultServer) -> Reply:
        if not authorised(req):
            return Reply(401, json={"message": "Invalid API key"})
        ids = (req.json or {}).get("external_ids") or []
        found = [i for i in ids if srv.store.pop(str(i), None) is not None]
        return Reply(201, json={"deleted": len(found), "message": "success"})

    server.route("POST", "/users/track", track)
    server.route("POST", "/users/delete", delete)


def config(ctx: SuiteContext, **overrides: Any) -> dict[str, Any]:
    assert ctx.server is not None
    return {"api_key": API_KEY, "rest_endpoint": ctx.server.url, **overrides}


TestBrazeDestinationConformance = destination_suite(
    BrazeDestination,
    config=config,
    server=emulate,
    object="users",
    match_key="external_id",
    sample_records=[
        {"external_id": "u-1", "email": "ana@example.com", "first_name": "Ana",
         "last_name": "Müller", "home_city": "Zürich"},
        {"external_id": "u-2", "email": "bo@example.com", "first_name": "Bo",
         "last_name": "Chen", "home_city": "Lyon"},
    ],
    rejected_record={"external_id": REJECTED, "email": "not-an-email", "first_name": "X",
                     "last_name": "Y", "home_city": "Z"},
    bad_config={"rest_endpoint": "rest.iad-01.braze.com", "concurrency": 0},
    failing_config=lambda ctx: config(ctx, api_key="wrong-braze-key-000"),
    text_fields=["first_name", "last_name", "home_city"],
)
