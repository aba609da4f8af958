"""conn's conformance suite for the ``salesforce`` destination (conn.testing.conformance),
against conn's fault server emulating the documented calls the plugin makes: the OAuth 2
refresh-token grant, ``limits``, sObject Collections upsert by external id, a SOQL lookup
and Collections delete (Bulk API 2.0 is off here: ``bulk_threshold: 0``)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

from conn.testing.conformance import SuiteContext, destination_suite
from conn.testing.http import FaultServer, RecordedRequest, Reply
from conn_destination_salesforce.destination import SalesforceDestination

CLIENT_ID, CLIENT_SECRET = "conf-consumer-key-3f8b", "conf-consumer-secret-3f8b"
REFRESH_TOKEN, ACCESS_TOKEN = "conf-refresh-token-3f8b", "00Dconf!access-token-9a7c"
EXT = "External_Id__c"
REJECTED = "ext-rejected"
API = "/services/data/v62.0"


def emulate(server: FaultServer) -> None:
    """One org: Contacts stored in ``server.store`` by external id; Ids ``003<ext>``."""

    def token(req: RecordedRequest, srv: FaultServer) -> Reply:
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        if form.get("refresh_token") != REFRESH_TOKEN or \
                form.get("client_secret") != CLIENT_SECRET:
            return Reply(400, json={"error": "invalid_grant",
                                    "error_description": "expired access/refresh token"})
        return Reply(200, json={"access_token": ACCESS_TOKEN, "instance_url": srv.url,
                                "token_type": "Bearer"})

    def api(req: RecordedRequest, srv: FaultServer) -> Reply:
        if req.header("Authorization") != f"Bearer {ACCESS_TOKEN}":
            return Reply(401, json=[{"errorCode": "INVALID_SESSION_ID",
                                     "message": "Session expired or invalid"}])
        path = req.path.removeprefix(API)
        if path == "/limits" and req.method == "GET":
            return Reply(200, json={"DailyApiRequests": {"Max": 15000, "Remaining": 14999}})
        if path == f"/composite/sobjects/Contact/{EXT}" and req.method == "PATCH":
            out = []
            for rec in (req.json or {}).get("records") or []:
                ext = rec.get(EXT)
                if ext == REJECTED:
                    out.append({"success": False, "errors": [{
                        "statusCode": "INVALID_EMAIL_ADDRESS", "fields": ["Email"],
                        "message": "Email: invalid email address"}]})
                    continue
                created = ext not in srv.store
                srv.store[str(ext)] = rec
                out.append({"id": f"003{ext}", "success": True, "created": created,
                            "errors": []})
            return Reply(200, json=out)
        if path == "/query" and req.method == "GET":
            wanted = re.findall(r"'((?:[^'\\]|\\.)*)'", req.query.get("q", [""])[0])
            records = [{"attributes": {"type": "Contact"}, "Id": f"003{v}", EXT: v}
                       for v in wanted if v in srv.store]
            return Reply(200, json={"totalSize": len(records), "done": True,
                                    "records": records})
        if path == "/composite/sobjects" and req.method == "DELETE":
            out = []
            for rid in req.query.get("ids", [""])[0].split(","):
                gone = srv.store.pop(rid.removeprefix("003"), None) is not None
                out.append({"id": rid, "success": gone, "errors": [] if gone else [
                    {"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted"}]})
            return Reply(200, json=out)
        return Reply(404, json=[{"errorCode": "NOT_FOUND", "message": "no such resource"}])

    server.route("POST", "/services/oauth2/token", token, faults=False)
    server.handler = api


def config(ctx: SuiteContext, **overrides: Any) -> dict[str, Any]:
    assert ctx.server is not None
    return {"login_url": ctx.server.url, "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN,
            "objects": {"Contact": {"external_id": EXT, "bulk_threshold": 0,
                                    "personal": {"Email": "email"},
                                    "fields": {"Email": {"type": "string"},
                                               "FirstName": {"type": ["string", "null"]},
                                               "LastName": {"type": "string"}}}},
            "retry": {"max_attempts": 2, "base_delay": 0.01}, **overrides}


TestSalesforceDestinationConformance = destination_suite(
    SalesforceDestination,
    config=config,
    server=emulate,
    object="Contact",
    sample_records=[
        {EXT: "ext-1", "Email": "ana@example.com", "FirstName": "Ana", "LastName": "Müller"},
        {EXT: "ext-2", "Email": "bo@example.com", "FirstName": "Bo", "LastName": "Chen"},
    ],
    rejected_record={EXT: REJECTED, "Email": "not-an-email", "FirstName": "X",
                     "LastName": "Y"},
    bad_config={"client_id": "", "objects": {}},
    failing_config=lambda ctx: config(ctx, refresh_token="conf-wrong-refresh-000"),
    text_fields=["FirstName", "LastName"],
)
