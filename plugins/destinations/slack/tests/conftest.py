"""Fixtures and a loopback Slack for the slack destination tests.

:func:`emulate` makes conn's fault server answer as Slack documents it (loopback
fixtures built from the documentation, not from a live workspace):

- incoming webhook ``POST /services/T0/B0/<secret>``: ``200`` with the text ``ok``;
  ``400 invalid_payload`` for a body without ``text``/``blocks`` or with a message
  containing ``REFUSED``; ``404 channel_not_found`` for another webhook path
  (https://api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-webhooks);
- ``POST /api/chat.postMessage``: ``200 {"ok": true, "channel", "ts"}``, or ``200
  {"ok": false, "error"}``: ``invalid_auth`` without the bot token, ``no_text``,
  ``msg_too_long`` for a message containing ``REFUSED``, ``channel_not_found`` for a
  channel not in :data:`CHANNELS` (https://docs.slack.dev/reference/methods/chat.postMessage);
- ``POST /api/auth.test``: ``{"ok": true, ...}`` with the token, else ``invalid_auth``.

Posted messages are kept in ``server.store`` (by ``event_id`` when the message carries
one in its text, else by arrival) and in order in ``server.posted``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conn.testing.http import FaultServer, RecordedRequest, Reply

CASSETTES = Path(__file__).parent / "cassettes"
HOOK_PATH = "/services/T0CONN000/B0CONN000/hooksecretXXXXXXXXXXXXXXX"
TOKEN = "xoxb-0000-test-bot-token-conn"
CHANNELS = ("C0ALERTS", "C0OPS")
_ID = re.compile(r"\bid=(\S+)")


def _keep(srv: FaultServer, body: dict[str, Any]) -> None:
    srv.posted.append(body)  # type: ignore[attr-defined]
    m = _ID.search(str(body.get("text", "")))
    key = m.group(1) if m else str(len(srv.posted))  # type: ignore[attr-defined]
    srv.arrivals[key] += 1
    srv.store[key] = body


def emulate(server: FaultServer) -> None:
    """Slack's webhook and Web API as documented (see the module docstring)."""

    def hook(req: RecordedRequest, srv: FaultServer) -> Reply:
        body = req.json
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
            return Reply(400, body=b"invalid_payload",
                         headers={"Content-Type": "text/plain"})
        if "REFUSED" in str(body):
            return Reply(400, body=b"invalid_payload", headers={"Content-Type": "text/plain"})
        _keep(srv, body)
        return Reply(200, body=b"ok", headers={"Content-Type": "text/plain"})

    def other_hook(req: RecordedRequest, srv: FaultServer) -> Reply:
        return Reply(404, body=b"channel_not_found", headers={"Content-Type": "text/plain"})

    def api_reply(doc: dict[str, Any]) -> Reply:
        return Reply(200, json=doc, headers={"Content-Type": "application/json; charset=utf-8"})

    def post_message(req: RecordedRequest, srv: FaultServer) -> Reply:
        if req.header("Authorization") != f"Bearer {TOKEN}":
            return api_reply({"ok": False, "error": "invalid_auth"})
        body = req.json or {}
        if body.get("channel") not in CHANNELS:
            return api_reply({"ok": False, "error": "channel_not_found"})
        if not (body.get("text") or body.get("blocks")):
            return api_reply({"ok": False, "error": "no_text"})
        if "REFUSED" in str(body):
            return api_reply({"ok": False, "error": "msg_too_long"})
        _keep(srv, body)
        return api_reply({"ok": True, "channel": body["channel"],
                          "ts": f"1700000000.{len(srv.posted):06d}",  # type: ignore[attr-defined]
                          "message": {"type": "message", "text": body.get("text", "")}})

    def auth_test(req: RecordedRequest, srv: FaultServer) -> Reply:
        if req.header("Authorization") != f"Bearer {TOKEN}":
            return api_reply({"ok": False, "error": "invalid_auth"})
        return api_reply({"ok": True, "url": "https://conn-test.slack.com/", "team": "conn",
                          "user": "conn-bot", "team_id": "T0CONN000", "user_id": "U0BOT"})

    server.posted = []  # type: ignore[attr-defined]
    server.route("POST", HOOK_PATH, hook)
    server.route("POST", "/services/{team}/{bot}/{key}", other_hook)
    server.route("POST", "/api/chat.postMessage", post_message)
    server.route("POST", "/api/auth.test", auth_test, faults=False)


@pytest.fixture
def slack(fault_server: FaultServer) -> FaultServer:
    """The fault server emulating Slack (no faults until configured)."""
    emulate(fault_server)
    return fault_server


@pytest.fixture(autouse=True)
def _isolated(clean_secrets: None, close_http_clients: None) -> None:
    """Every test starts with no registered secrets and closes the HTTP clients it
    opened (conn's pytest plugin)."""
