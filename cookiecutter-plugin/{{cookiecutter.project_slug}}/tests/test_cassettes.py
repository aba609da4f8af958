"""Replays a cassette written from the {{ cookiecutter.plugin_name }} API documentation.

The cassette starts with conn's marker line (``DOC_CASSETTE_MARKER``): it was written by
hand from the vendor's documented examples, not recorded live. conn's ``cassette`` fixture
replays it, matching each request's method, URL and body (as parsed data) with the
cassette's, so the test fails when the destination sends something else. Once you have a
sandbox account, record a real one with ``vcr_for(record_mode="once")`` and credentials
from the environment (conn's vcr helper keeps them out of the file), then drop the
marker.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from conn.testing.harness import write_records
from conn.testing.http import assert_documented_cassette, assert_no_secrets

from {{ cookiecutter.package_name }}.destination import {{ cookiecutter.class_name }}

CASSETTE = Path(__file__).parent / "cassettes" / "contacts_batch.yaml"
CONFIG = {
    "base_url": "https://api.example.com/v1",
{%- if cookiecutter.__auth == 'bearer' %}
    "token": "doc-example-token",
{%- elif cookiecutter.__auth == 'basic' %}
    "username": "doc-example-user",
    "password": "doc-example-password",
{%- elif cookiecutter.__auth == 'oauth2' %}
    "token_url": "https://auth.example.com/oauth/token",
    "client_id": "doc-example-client",
    "client_secret": "doc-example-client-secret",
    "refresh_token": "doc-example-refresh-token",
{%- endif %}
}


def test_documented_batch_reports_rejections(cassette: Callable[..., Any]) -> None:
    assert_documented_cassette(CASSETTE)
    dest = {{ cookiecutter.class_name }}(CONFIG, instance="docs")
    records = [
        {"id": "c-1", "email": "ana@example.com", "first_name": "Ana", "last_name": None,
         "lifetime_value": 10.0, "plan": "pro"},
        {"id": "c-2", "email": "bo@example", "first_name": "Bo", "last_name": None,
         "lifetime_value": 0.0, "plan": "free"},
    ]
    with dest, cassette("contacts_batch") as cas:
        result = write_records(dest, "contacts", records)
    assert cas.all_played
    assert [r.index for r in result.rejected] == [1]
    assert "email" in result.rejected[0].reason
    assert not result.pending
    secret_keys = ("token", "password", "client_secret", "refresh_token")
    assert_no_secrets(CASSETTE, [v for k, v in CONFIG.items() if k in secret_keys])
