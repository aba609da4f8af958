"""No secret in logs, exception messages or dry-run descriptions."""

from __future__ import annotations

import logging

import pytest
from conn import secrets
from conn.errors import RetryLater
from conn.http import BearerToken, HttpClient, RetryPolicy, describe, safe_url
from conn.testing.http import FaultServer, Reply

TOKEN = "sk_live_verysecret123"
APIKEY = "ak_0123456789"


def test_no_secret_in_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    secrets.register(APIKEY)
    caplog.set_level(logging.DEBUG, logger="conn.http")
    body = {"message": f"token {TOKEN} is throttled", "key": APIKEY}
    with FaultServer(schedule=[Reply(503, json=body)] * 3) as srv:
        c = HttpClient(srv.url, auth=BearerToken(TOKEN),
                       retry=RetryPolicy(max_attempts=3, base_delay=0.001))
        with pytest.raises(RetryLater) as ei:
            c.post(f"/v1/batch?hapikey={APIKEY}&api_key={APIKEY}", json={"a": 1})
    text = caplog.text + str(ei.value) + repr(ei.value)
    assert "retry 1/2" in caplog.text  # retries were logged...
    assert TOKEN not in text and APIKEY not in text  # ...without the secrets
    assert "Authorization" not in caplog.text and "Bearer" not in caplog.text
    assert ei.value.__cause__ is None


def test_status_error_redacted() -> None:
    with FaultServer(schedule=[Reply(400, json={"error": f"bad key {TOKEN}"})]) as srv:
        c = HttpClient(srv.url, auth=BearerToken(TOKEN))
        with pytest.raises(Exception) as ei:
            c.raise_for_status(c.get("/x"))
    assert TOKEN not in str(ei.value) and "HTTP 400" in str(ei.value)


def test_safe_url_and_describe() -> None:
    secrets.register(TOKEN)
    assert safe_url(f"https://u:{TOKEN}@h/p?token={TOKEN}&x=1") == "https://h/p?token=***&x=1"
    d = describe("post", f"/p?api_key={APIKEY}", base_url="https://api.example.com",
                 headers={"Authorization": f"Bearer {TOKEN}", "X-Signature": "abc",
                          "Content-Type": "application/json"},
                 json={"note": TOKEN, "n": 1})
    assert d == {"method": "POST", "url": "https://api.example.com/p?api_key=***",
                 "path": "/p", "headers": {"Authorization": "Bearer ***",
                                           "X-Signature": "***",
                                           "Content-Type": "application/json"},
                 "json": {"note": "***", "n": 1}}


def test_client_describe_lists_masked_auth_headers() -> None:
    c = HttpClient("https://api.example.com", auth=BearerToken(TOKEN))
    d = c.describe("POST", "/crm/v3/objects/contacts/batch/upsert", json={"inputs": []})
    assert d["headers"]["Authorization"] == "Bearer ***"
    assert d["path"] == "/crm/v3/objects/contacts/batch/upsert" and d["json"] == {"inputs": []}


def test_still_failing_names_the_url_sent_with_secrets_masked_in_every_form(
        caplog: pytest.LogCaptureFixture) -> None:
    """The message after the last retry names the URL really requested (a base URL's
    path prefix such as /v1 included), and a registered secret in it is masked also where
    the URL percent-encodes it (in the path and in query parameters)."""
    from urllib.parse import quote

    secret = "pa ss+word/0x"
    secrets.register(secret)
    caplog.set_level(logging.DEBUG, logger="conn.http")
    with FaultServer(schedule=[503] * 2) as srv:
        url = srv.url
        c = HttpClient(url + "/v1", retry=RetryPolicy(max_attempts=2, base_delay=0.001))
        with pytest.raises(RetryLater) as ei:
            c.post(f"/persons/{quote(secret, safe='')}", params={"ref": secret, "page": 2},
                   json={})
    message = str(ei.value)
    assert message.startswith(f"POST {url}/v1/persons/***?ref=***&page=2 still failing "
                              "after 2 attempt(s)")
    for text in (message, caplog.text):
        for form in (secret, quote(secret, safe=""), quote(secret), quote(secret, safe="/+")):
            assert form not in text
