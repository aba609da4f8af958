"""conn's conformance suite for the ``hubspot`` destination (conn.testing.conformance),
against conn's fault server emulating HubSpot's v3 batch object endpoints as documented
(bearer token, 207 multi-status with ``errors`` naming ``objectWriteTraceId``s)."""

from __future__ import annotations

from typing import Any

from conn.testing.conformance import SuiteContext, destination_suite
from conn.testing.http import FaultServer, RecordedRequest, Reply
from conn_destination_hubspot.destination import HubSpotDestination

TOKEN = "pat-conf-hubspot-token-5e1a"
REJECTED = "rejected@example.com"
BASE = "/crm/v3/objects/contacts/batch"


def emulate(server: FaultServer) -> None:
    """Contacts stored by e-mail; record ids are ``rid-<email>``."""

    def authorised(req: RecordedRequest) -> bool:
        return req.header("Authorization") == f"Bearer {TOKEN}"

    def guard(handler: Any) -> Any:
        def wrapped(req: RecordedRequest, srv: FaultServer) -> Reply:
            if not authorised(req):
                return Reply(401, json={"status": "error", "category": "INVALID_AUTHENTICATION",
                                        "message": "Authentication credentials not found."})
            return handler(req, srv)
        return wrapped

    def write(req: RecordedRequest, srv: FaultServer) -> Reply:
        results, errors = [], []
        for n, item in enumerate((req.json or {}).get("inputs") or []):
            props = dict(item.get("properties") or {})
            email = item.get("id") if item.get("idProperty") == "email" else props.get("email")
            trace = item.get("objectWriteTraceId", str(n))
            if email == REJECTED:
                errors.append({"status": "error", "category": "VALIDATION_ERROR",
                               "message": "Property values were not valid: email",
                               "context": {"objectWriteTraceId": [trace]}})
                continue
            srv.store[str(email)] = {**srv.store.get(str(email), {}), **props, "email": email}
            results.append({"id": f"rid-{email}", "properties": {"email": email},
                            "objectWriteTraceId": trace})
        body: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if errors:
            body.update(errors=errors, numErrors=len(errors))
        return Reply(207 if errors else 200, json=body)

    def read(req: RecordedRequest, srv: FaultServer) -> Reply:
        ids = [i.get("id") for i in (req.json or {}).get("inputs") or []]
        return Reply(200, json={"status": "COMPLETE", "results": [
            {"id": f"rid-{e}", "properties": {"email": e}} for e in ids if e in srv.store]})

    def archive(req: RecordedRequest, srv: FaultServer) -> Reply:
        for item in (req.json or {}).get("inputs") or []:
            srv.store.pop(str(item.get("id", "")).removeprefix("rid-"), None)
        return Reply(204)

    def gdpr_delete(req: RecordedRequest, srv: FaultServer) -> Reply:
        body = req.json or {}
        if body.get("idProperty") == "email":  # unknown addresses are blocklisted: 204
            srv.store.pop(str(body.get("objectId")), None)
            return Reply(204)
        email = str(body.get("objectId", "")).removeprefix("rid-")
        if srv.store.pop(email, None) is None:
            return Reply(404, json={"status": "error", "category": "OBJECT_NOT_FOUND",
                                    "message": "Object not found."})
        return Reply(204)

    def merge(req: RecordedRequest, srv: FaultServer) -> Reply:
        body = req.json or {}
        keep = str(body.get("primaryObjectId", "")).removeprefix("rid-")
        gone = str(body.get("objectIdToMerge", "")).removeprefix("rid-")
        if keep not in srv.store or gone not in srv.store:
            return Reply(404, json={"status": "error", "category": "OBJECT_NOT_FOUND",
                                    "message": "Object not found."})
        srv.store[keep] = {**srv.store.pop(gone), **srv.store[keep]}
        return Reply(200, json={"id": f"rid-{keep}", "properties": {"email": keep},
                                "archived": False})

    def usage(req: RecordedRequest, srv: FaultServer) -> Reply:
        return Reply(200, json=[{"name": "private-apps-api-calls-daily", "usageLimit": 250000,
                                 "currentUsage": 1}])

    server.route("GET", "/account-info/v3/api-usage/daily/private-apps", guard(usage))
    for verb in ("upsert", "create", "update"):
        server.route("POST", f"{BASE}/{verb}", guard(write))
    server.route("POST", f"{BASE}/read", guard(read))
    server.route("POST", f"{BASE}/archive", guard(archive))
    server.route("POST", "/crm/v3/objects/contacts/gdpr-delete", guard(gdpr_delete))
    server.route("POST", "/crm/v3/objects/contacts/merge", guard(merge))


def config(ctx: SuiteContext, **overrides: Any) -> dict[str, Any]:
    assert ctx.server is not None
    return {"access_token": TOKEN, "base_url": ctx.server.url, **overrides}


TestHubSpotDestinationConformance = destination_suite(
    HubSpotDestination,
    config=config,
    server=emulate,
    object="contacts",
    match_key="email",
    sample_records=[
        {"email": "ana@example.com", "firstname": "Ana", "lastname": "Müller",
         "company": "Acme"},
        {"email": "bo@example.com", "firstname": "Bo", "lastname": "Chen", "company": "Initech"},
    ],
    rejected_record={"email": REJECTED, "firstname": "X", "lastname": "Y", "company": "Z"},
    bad_config={"access_token": "", "tier": "platinum"},
    failing_config=lambda ctx: config(ctx, access_token="pat-wrong-token-000"),
    text_fields=["firstname", "lastname", "company"],
)
