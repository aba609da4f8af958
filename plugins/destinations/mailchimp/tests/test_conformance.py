"""conn's conformance suite for the ``mailchimp`` destination (conn.testing.conformance),
against conn's fault server emulating the documented Marketing API calls the plugin uses
(ping, list, batch subscribe, member PUT, tags, archive) with HTTP Basic auth."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from conn.testing.conformance import SuiteContext, destination_suite
from conn.testing.http import FaultServer, RecordedRequest, Reply
from conn_destination_mailchimp.destination import MailchimpDestination

API_KEY = "0123456789abcdefconf5e1a-us6"
LIST = "L1"
REJECTED = "rejected@example.com"


def _h(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def emulate(server: FaultServer) -> None:
    """One audience ``L1``; members stored by e-mail in ``server.store``."""
    expected = "Basic " + base64.b64encode(f"conn:{API_KEY}".encode()).decode()
    by_hash: dict[str, str] = {}

    def api(req: RecordedRequest, srv: FaultServer) -> Reply:
        if req.header("Authorization") != expected:
            return Reply(401, json={"title": "API Key Invalid", "status": 401,
                                    "detail": "Your API key may be invalid."})
        parts = req.path.strip("/").split("/")
        if parts == ["3.0", "ping"]:
            return Reply(200, json={"health_status": "Everything's Chimpy!"})
        if parts[:3] != ["3.0", "lists", LIST]:
            return Reply(404, json={"title": "Resource Not Found", "status": 404})
        if len(parts) == 3 and req.method == "GET":
            return Reply(200, json={"id": LIST, "name": "Conformance"})
        if len(parts) == 3 and req.method == "POST":
            new, errors = [], []
            for m in (req.json or {}).get("members") or []:
                email = m["email_address"]
                if email == REJECTED:
                    errors.append({"email_address": email, "error_code": "ERROR_GENERIC",
                                   "error": f"{email} looks fake or invalid"})
                elif email in srv.store:
                    errors.append({"email_address": email,
                                   "error_code": "ERROR_CONTACT_EXISTS",
                                   "error": f"{email} is already a list member."})
                else:
                    srv.store[email], by_hash[_h(email)] = dict(m), email
                    new.append({"id": _h(email), **m})
            return Reply(200, json={"new_members": new, "updated_members": [],
                                    "errors": errors, "total_created": len(new),
                                    "total_updated": 0, "error_count": len(errors)})
        h = parts[4] if len(parts) > 4 else ""
        if len(parts) == 5 and req.method == "PUT":
            body = req.json or {}
            email = body["email_address"]
            member = srv.store.setdefault(email, {"email_address": email,
                                                  "status": body.get("status_if_new")})
            member.update({k: v for k, v in body.items() if k != "status_if_new"})
            by_hash[h] = email
            return Reply(200, json={"id": h, **member})
        if len(parts) == 6 and parts[5] == "tags" and req.method == "POST":
            return Reply(204)
        permanent = parts[5:] == ["actions", "delete-permanent"] and req.method == "POST"
        if (len(parts) == 5 and req.method == "DELETE") or permanent:
            email = by_hash.pop(h, None)
            if email is None or srv.store.pop(email, None) is None:
                return Reply(404, json={"title": "Resource Not Found", "status": 404})
            return Reply(204)
        return Reply(405, json={"title": "Method Not Allowed", "status": 405})

    server.handler = api


def config(ctx: SuiteContext, **overrides: Any) -> dict[str, Any]:
    assert ctx.server is not None
    return {"api_key": API_KEY, "list_id": LIST, "base_url": ctx.server.url + "/3.0",
            **overrides}


TestMailchimpDestinationConformance = destination_suite(
    MailchimpDestination,
    config=config,
    server=emulate,
    object="members",
    sample_records=[
        {"email_address": "ana@example.com", "FNAME": "Ana", "LNAME": "Müller"},
        {"email_address": "bo@example.com", "FNAME": "Bo", "LNAME": "Chen"},
    ],
    rejected_record={"email_address": REJECTED, "FNAME": "X", "LNAME": "Y"},
    bad_config={"list_id": "", "concurrency": 0},
    failing_config=lambda ctx: config(ctx, api_key="ffffffffffffffffwrong000-us6"),
    text_fields=["FNAME", "LNAME"],
)
