"""conn's conformance suite for the ``meta_audiences`` destination
(conn.testing.conformance), against conn's fault server emulating the documented Custom
Audience calls (``GET /{v}/{id}``, ``POST``/``DELETE /{v}/{id}/users``) made as
facebook-business makes them (form bodies, query strings, ``access_token``). The
destination hashes identifiers itself here (``hash_in_destination``), so the fake
audience holds SHA-256 digests of normalised e-mail addresses."""

from __future__ import annotations

import hashlib
from typing import Any

from conn.testing.conformance import SuiteContext, destination_suite
from conn.testing.http import FaultServer, RecordedRequest, Reply
from conn_destination_meta_audiences.destination import MetaAudiencesDestination

from .conftest import graph_params

TOKEN = "EAAconfmetatoken5e1a"
AUDIENCE = "23850000000000001"
VERSION = "v25.0"
REJECTED = "rejected@example.com"


def digest(email: Any) -> str:
    """How Meta stores an e-mail address: SHA-256 of the trimmed lower-case value."""
    return hashlib.sha256(str(email).strip().lower().encode()).hexdigest()


def emulate(server: FaultServer) -> None:
    """One audience; ``server.store`` holds the digests of its e-mail addresses."""

    def api(req: RecordedRequest, srv: FaultServer) -> Reply:
        params = graph_params(req)
        if params.get("access_token", req.header("Authorization", "").removeprefix(
                "Bearer ")) != TOKEN:
            return Reply(401, json={"error": {"message": "Invalid OAuth access token.",
                                              "type": "OAuthException", "code": 190}})
        parts = req.path.strip("/").split("/")
        if parts[:2] != [VERSION, AUDIENCE]:
            return Reply(404, json={"error": {"message": "Unsupported request", "code": 100}})
        if len(parts) == 2 and req.method == "GET":
            return Reply(200, json={"id": AUDIENCE, "name": "Conformance",
                                    "operation_status": {"code": 200, "description": "Normal"}})
        if parts[2:] != ["users"] or req.method not in ("POST", "DELETE"):
            return Reply(405, json={"error": {"message": "Method not allowed", "code": 100}})
        payload = params.get("payload") or {}
        column = (payload.get("schema") or []).index("EMAIL")
        invalid = {}
        for row in payload.get("data") or []:
            cell = row[column]
            if cell == digest(REJECTED):
                invalid[cell] = "invalid email"
            elif req.method == "POST":
                srv.store[cell] = row
            else:
                srv.store.pop(cell, None)
        return Reply(200, json={"audience_id": AUDIENCE,
                                "session_id": (params.get("session") or {}).get(
                                    "session_id"),
                                "num_received": len(payload.get("data") or []),
                                "num_invalid_entries": len(invalid),
                                "invalid_entry_samples": invalid})

    server.handler = api


def config(ctx: SuiteContext, **overrides: Any) -> dict[str, Any]:
    assert ctx.server is not None
    return {"access_token": TOKEN, "audience_id": AUDIENCE, "api_version": VERSION,
            "base_url": ctx.server.url, "hash_in_destination": True, "batch_size": 500,
            **overrides}


TestMetaAudiencesDestinationConformance = destination_suite(
    MetaAudiencesDestination,
    config=config,
    server=emulate,
    object="audience",
    match_key="email",
    sample_records=[
        {"email": "ana@example.com", "fn": "Ana", "ln": "Müller"},
        {"email": "bo@example.com", "fn": "Bo", "ln": "Chen"},
    ],
    rejected_record={"email": REJECTED, "fn": "X", "ln": "Y"},
    bad_config={"access_token": 5, "batch_size": 0},
    failing_config=lambda ctx: config(ctx, access_token="EAAwrongtoken000"),
    text_fields=["fn", "ln"],
    key_as_stored=digest,
)
