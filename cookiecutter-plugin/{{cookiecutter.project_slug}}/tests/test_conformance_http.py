"""conn's conformance suite against a local fake of the {{ cookiecutter.plugin_name }} API,
and a whole sync through it.

The fake (:class:`conn.testing.http.FaultServer`) stores batches by ``id``, deletes one
record per ``DELETE /<object>/{id}``, erases one per ``POST /<object>/{id}/erase``,
answers per-record errors for the ids in ``reject`` and refuses wrong credentials with
401; change :func:`emulate` when you adapt the destination to the vendor's real API.
"""

from __future__ import annotations
{% if cookiecutter.__auth == 'basic' %}
import base64
{%- endif %}
from pathlib import Path
from typing import Any
{%- if cookiecutter.__auth == 'oauth2' %}
from urllib.parse import parse_qs
{%- endif %}

from conn.testing.conformance import SuiteContext, destination_suite
from conn.testing.http import FaultServer, RecordedRequest, Reply
from conn.testing.sync import SyncHarness

from {{ cookiecutter.package_name }}.destination import {{ cookiecutter.class_name }}

{% if cookiecutter.__auth == 'bearer' -%}
TOKEN = "test-token-5f3b9c"
EXPECTED_AUTH: str | None = f"Bearer {TOKEN}"
{%- elif cookiecutter.__auth == 'basic' -%}
USERNAME, PASSWORD = "conn-tests", "test-password-5f3b9c"
EXPECTED_AUTH: str | None = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
{%- elif cookiecutter.__auth == 'oauth2' -%}
CLIENT_ID, CLIENT_SECRET = "conn-tests", "test-client-secret-5f3b9c"
REFRESH_TOKEN, ACCESS_TOKEN = "test-refresh-token-5f3b9c", "test-access-token-7d1e2a"
EXPECTED_AUTH: str | None = f"Bearer {ACCESS_TOKEN}"
{%- else -%}
EXPECTED_AUTH: str | None = None
{%- endif %}
REJECTED_ID = "c-rejected"

SAMPLES = [
    {"id": "c-1", "email": "ana@example.com", "first_name": "Ana", "last_name": "Müller",
     "lifetime_value": 1234.5, "plan": "pro"},
    {"id": "c-2", "email": "bo@example.com", "first_name": "Bo", "last_name": "Chen",
     "lifetime_value": 0.0, "plan": "free"},
]


def authorised(req: RecordedRequest) -> bool:
    """Whether the request carries the right credentials."""
    return EXPECTED_AUTH is None or req.header("Authorization") == EXPECTED_AUTH


def emulate(server: FaultServer) -> None:
    """Make the fault server behave like the vendor's API."""
    server.configure(reject=[REJECTED_ID])

    def api(req: RecordedRequest, srv: FaultServer) -> Reply:
        if not authorised(req):
            return Reply(401, json={"message": "invalid credentials"})
        return FaultServer.batch_handler(req, srv)

    def delete(req: RecordedRequest, srv: FaultServer) -> Reply:
        if not authorised(req):
            return Reply(401, json={"message": "invalid credentials"})
        if srv.store.pop(req.params["id"], None) is None:
            return Reply(404, json={"message": "no such record"})
        srv.deleted[req.params["id"]] += 1
        return Reply(204)

    def erase(req: RecordedRequest, srv: FaultServer) -> Reply:
        if not authorised(req):
            return Reply(401, json={"message": "invalid credentials"})
        if srv.store.pop(req.params["id"], None) is None:
            return Reply(404, json={"message": "nothing to erase"})
        return Reply(204)

    server.handler = api
    server.route("DELETE", "/{object}/{id}", delete)
    server.route("POST", "/{object}/{id}/erase", erase)
{%- if cookiecutter.__auth == 'oauth2' %}

    def token(req: RecordedRequest, srv: FaultServer) -> Reply:
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        if form.get("refresh_token") != REFRESH_TOKEN or form.get("client_secret") != \
                CLIENT_SECRET:
            return Reply(400, json={"error": "invalid_grant"})
        return Reply(200, json={"access_token": ACCESS_TOKEN, "expires_in": 3600})

    server.route("POST", "/oauth/token", token, faults=False)
{%- endif %}


def config(ctx: SuiteContext, **overrides: Any) -> dict[str, Any]:
    """A working config pointing at the fake API."""
    assert ctx.server is not None
    return {
        "base_url": ctx.server.url,
{%- if cookiecutter.__auth == 'bearer' %}
        "token": TOKEN,
{%- elif cookiecutter.__auth == 'basic' %}
        "username": USERNAME,
        "password": PASSWORD,
{%- elif cookiecutter.__auth == 'oauth2' %}
        "token_url": ctx.server.url + "/oauth/token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
{%- endif %}
        **overrides,
    }


Test{{ cookiecutter.class_name }}Conformance = destination_suite(
    {{ cookiecutter.class_name }},
    config=config,
    server=emulate,
    object="contacts",
    sample_records=SAMPLES,
    rejected_record={**SAMPLES[0], "id": REJECTED_ID},
    bad_config={"base_url": "ftp://example.com", "batch_size": 0},
{%- if cookiecutter.__auth == 'bearer' %}
    failing_config=lambda ctx: config(ctx, token="wrong-token-000"),
{%- elif cookiecutter.__auth == 'basic' %}
    failing_config=lambda ctx: config(ctx, password="wrong-password-000"),
{%- elif cookiecutter.__auth == 'oauth2' %}
    failing_config=lambda ctx: config(ctx, refresh_token="wrong-refresh-token-000"),
{%- endif %}
)


def test_a_mirror_sync_deletes_what_left_the_source(tmp_path: Path,
                                                     fault_server: FaultServer) -> None:
    """Two whole syncs, as ``conn sync`` runs them (:class:`conn.testing.sync.SyncHarness`
    keeps the state between them): the second sends nothing unchanged and deletes the
    record that left the source."""
    emulate(fault_server)
    sync = {"object": "contacts", "match_key": "id", "mode": "mirror",
            "mapping": {name: name for name in SAMPLES[0]}}
    with SyncHarness(tmp_path / "project") as h:
        h.destination("crm", {{ cookiecutter.class_name }},
                      config(SuiteContext(tmp_path, fault_server)))
        h.stream("people", SAMPLES, primary_key="id")
        first = h.sync("crm", "people", **sync)
        assert (first.status, first.inserted) == ("ok", 2), first.error
        h.stream("people", SAMPLES[:1], primary_key="id")
        second = h.sync("crm", "people", **sync)
        assert (second.status, second.deleted, second.unchanged) == ("ok", 1, 1), second.error
    assert set(fault_server.store) == {SAMPLES[0]["id"]}


def test_erase_is_retried_and_counts_unknown_keys_as_erased(tmp_path: Path,
                                                            fault_server: FaultServer) -> None:
    """``erase`` (conn forget) sends one ``POST .../erase`` per key; 429 and 5xx are
    retried; a key the API does not hold (404) is acknowledged as erased."""
    from conn.testing.harness import write_records

    emulate(fault_server)
    dest = {{ cookiecutter.class_name }}(config(SuiteContext(tmp_path, fault_server)))
    assert write_records(dest, "contacts", SAMPLES).rejected == []
    fault_server.configure(error_rate=0.2, throttle_rate=0.2, retry_after=0.01, seed=2)
    res = write_records(dest, "contacts", [{"id": "c-1"}, {"id": "never"}],
                        operation="erase")
    assert res.rejected == [] and res.pending == [] and res.error is None
    assert set(fault_server.store) == {"c-2"}
    assert any(r.fault for r in fault_server.requests)
