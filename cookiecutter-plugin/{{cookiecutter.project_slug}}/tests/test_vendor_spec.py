"""Every request the destination sends, and every request of the cassettes, checked
against what the {{ cookiecutter.plugin_name }} API publishes.

Test your requests against the vendor, not against your own reading of your code:

- if the vendor publishes an OpenAPI file or an official SDK on PyPI, add it to the
  ``test`` extra of ``pyproject.toml`` and validate each request body with it (the SDK's
  generated models, or the OpenAPI file's request schema run through ``jsonschema``);
- if it publishes documents only, write each rule down here as a JSON Schema fragment
  with the URL of the page that states it, as :data:`REQUESTS` does.

The requests are made through conn's real write path (``write_records``) to a local
server; the cassettes, written by hand from the documentation, must pass the same
checks, so neither can drift from the vendor's rules unnoticed. Replace the example URLs
and rules with the vendor's own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml
from conn.testing.harness import write_records
from conn.testing.http import FaultServer, RecordedRequest, Reply

from {{ cookiecutter.package_name }}.destination import {{ cookiecutter.class_name }}

DOCS = "https://api.example.com/docs"

#: (method, path pattern) -> (request body JSON Schema, URL of the page stating it)
REQUESTS: dict[tuple[str, str], tuple[dict[str, Any], str]] = {
    ("POST", r"^/v1/[a-z_]+/batch$"): ({
        "type": "object",
        "required": ["operation", "records"],
        "additionalProperties": False,
        "properties": {
            "operation": {"const": "upsert"},
            "records": {"type": "array", "minItems": 1, "maxItems": 100,
                        "items": {"type": "object", "required": ["id"]}},
        },
    }, f"{DOCS}/batch"),
    ("DELETE", r"^/v1/[a-z_]+/[^/]+$"): ({"type": "null"}, f"{DOCS}/delete"),
    ("GET", r"^/v1/?$"): ({"type": "null"}, f"{DOCS}/authentication"),
}


def request_errors(method: str, path: str, body: Any) -> list[str]:
    """Every published rule a request breaks, each with the URL that states it."""
    for (m, pattern), (schema, url) in REQUESTS.items():
        if m == method and re.match(pattern, path):
            validator = jsonschema.Draft202012Validator(schema)
            return [f"{e.message} at {'/'.join(map(str, e.path)) or 'body'} ({url})"
                    for e in validator.iter_errors(body)]
    return [f"{method} {path} is not a documented request ({DOCS})"]


CASSETTES = Path(__file__).parent / "cassettes"
RECORDS = [{"id": f"c-{i}", "email": f"u{i}@example.com", "first_name": "Ana",
            "last_name": None, "lifetime_value": float(i), "plan": "pro"}
           for i in range(250)]


def _config(url: str) -> dict:
    return {"base_url": url + "/v1",
{%- if cookiecutter.__auth == 'bearer' %}
            "token": "vendor-rules-token",
{%- elif cookiecutter.__auth == 'basic' %}
            "username": "vendor-rules", "password": "vendor-rules-password",
{%- elif cookiecutter.__auth == 'oauth2' %}
            "token_url": url + "/oauth/token", "client_id": "vendor-rules",
            "client_secret": "vendor-rules-secret", "refresh_token": "vendor-rules-refresh",
{%- endif %}
            }


def test_every_request_of_the_write_path_follows_the_published_rules(
        fault_server: FaultServer) -> None:
    def api(req: RecordedRequest, srv: FaultServer) -> Reply:
        if req.path.endswith("/oauth/token"):  # the token grant, for OAuth2 set-ups
            return Reply(200, json={"access_token": "vendor-rules-access",
                                    "token_type": "bearer", "expires_in": 3600})
        return FaultServer.batch_handler(req, srv)

    fault_server.handler = api
    fault_server.route("DELETE", "/v1/{object}/{id}", lambda req, srv: Reply(204))
    dest = {{ cookiecutter.class_name }}(_config(fault_server.url), instance="rules")
    with dest:
        result = write_records(dest, "contacts", RECORDS)
        deleted = write_records(dest, "contacts", RECORDS[:3], operation="delete")
    assert not result.rejected and not result.pending
    assert not deleted.rejected and not deleted.pending
    sent = [r for r in fault_server.requests if "/oauth/" not in r.path]
    assert sent, "nothing was sent"
    for req in sent:
        assert request_errors(req.method, req.path, req.json) == [], req.path


def test_the_cassettes_follow_the_same_rules() -> None:
    for cassette in sorted(CASSETTES.glob("*.yaml")):
        doc = yaml.safe_load(cassette.read_text())
        for interaction in doc["interactions"]:
            req = interaction["request"]
            path = urlsplit(req["uri"]).path
            if "/oauth/" in path:
                continue
            body = json.loads(req["body"]) if req.get("body") else None
            assert request_errors(req["method"], path, body) == [], cassette.name


def test_the_rules_catch_a_wrong_request() -> None:
    assert request_errors("POST", "/v1/contacts/batch", {"operation": "merge",
                                                         "records": []})
    assert request_errors("POST", "/v1/contacts/batch",
                          {"operation": "upsert", "records": [{"email": "x"}] * 101})
    assert request_errors("PUT", "/v1/contacts", {})
