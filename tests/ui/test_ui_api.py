"""The UI's JSON API answers what the CLI prints (it calls the same functions), its
actions act as the CLI's commands do, and it refuses what it must (docs/ui.md)."""

from __future__ import annotations

import json

import pytest
from conn.errors import ConfigError
from conn.ui.app import UiApp
from conn.ui.guard import Guard, check_bind

from tests.cli.test_cli import run_cli
from tests.runtime.test_runtime import people
from tests.ui.conftest import HOST, PORT, REJECTED, call, roster

SYNC = "people_to_crm"


def cli_json(monkeypatch, capsys, *args: str) -> tuple[int, dict]:
    code, out, _ = run_cli(monkeypatch, capsys, *args, "--json")
    return code, json.loads(out)


def test_runs_and_rejected_are_what_the_cli_prints(app, monkeypatch, capsys):
    assert run_cli(monkeypatch, capsys, "sync", "mem", "crm")[0] == 4  # rows rejected
    status, body = call(app, "GET", f"/api/syncs/{SYNC}/runs")
    assert status == 200 and body == cli_json(monkeypatch, capsys, "runs", SYNC)[1]
    status, body = call(app, "GET", f"/api/syncs/{SYNC}/rejected")
    assert status == 200 and body == cli_json(monkeypatch, capsys, "rejected", SYNC)[1]
    assert sorted(r["key"] for r in body["rejected"]) == sorted(REJECTED)
    # Search by key: the CLI's --key and the API's ?key= are one function.
    status, body = call(app, "GET", f"/api/syncs/{SYNC}/rejected?key=23")
    assert [r["key"] for r in body["rejected"]] == [23]
    assert body == cli_json(monkeypatch, capsys, "rejected", SYNC, "--key", "23")[1]
    assert call(app, "GET", f"/api/syncs/{SYNC}/rejected?key=99")[1]["rejected"] == []


def test_person_and_preview_are_what_the_cli_prints(app, monkeypatch, capsys):
    run_cli(monkeypatch, capsys, "sync", "mem", "crm")
    status, body = call(app, "GET", "/api/people/3")
    _, cli = cli_json(monkeypatch, capsys, "explain", "3")
    for d in (body, cli):
        d.pop("generated_at"), d["access_report"].pop("generated_at", None)
    assert status == 200 and body == cli and body["sent_by"] == [SYNC]
    people(roster(rename=" Jr"))
    status, body = call(app, "GET", f"/api/syncs/{SYNC}/preview?rows=3")
    _, cli = cli_json(monkeypatch, capsys, "preview", SYNC, "--rows", "3")
    assert status == 200 and {k: body[k] for k in cli} == cli
    # 40 people, 8 without consent, 2 rejected last time (retried: still inserts).
    assert body["counts"]["update"] == 30 and body["counts"]["insert"] == 2
    assert sum(len(r["records"]) for r in body["requests"]) == 3


def test_run_detail_counts_and_funnel(app, monkeypatch, capsys):
    run_cli(monkeypatch, capsys, "sync", "mem", "crm")
    run_id = call(app, "GET", "/api/syncs")[1]["syncs"][0]["last_run"]["run_id"]
    status, run = call(app, "GET", f"/api/runs/{run_id}")
    assert status == 200
    c = run["counts"]
    assert (c["read"], c["consent_denied"], c["succeeded"]["insert"], c["rejected"]) == \
        (40, 8, 30, 2)
    assert c["rejected_by_operation"] == {"write": 2}
    purposes = run["consent_funnel"]["purposes"]
    assert [(p["purpose"], p["rows"], p["passed"]) for p in purposes] == [("marketing", 40, 32)]
    assert sorted(r["key"] for r in run["rejected_rows"]) == sorted(REJECTED)
    assert call(app, "GET", "/api/runs/nope")[0] == 404


def test_pause_from_the_api_is_respected_by_conn_sync(app, monkeypatch, capsys):
    status, body = call(app, "POST", f"/api/syncs/{SYNC}/pause", {"reason": "vendor outage"})
    assert status == 200 and body["paused"] and body["reason"] == "vendor outage"
    code, out = cli_json(monkeypatch, capsys, "sync", "mem", "crm")
    assert code == 0 and out["syncs"][0]["status"] == "paused"
    assert out["syncs"][0]["rows_read"] == 0
    assert cli_json(monkeypatch, capsys, "runs")[1]["runs"] == []  # nothing recorded
    # A dry run still previews a paused sync.
    assert call(app, "GET", f"/api/syncs/{SYNC}/preview")[1]["counts"]["insert"] == 32
    assert call(app, "GET", "/api/syncs")[1]["syncs"][0]["paused"]["reason"] == "vendor outage"
    assert call(app, "POST", f"/api/syncs/{SYNC}/resume")[1] == \
        {"sync": SYNC, "paused": False, "was_paused": True}
    assert cli_json(monkeypatch, capsys, "sync", "mem", "crm")[1]["syncs"][0]["status"] == \
        "rejected"


def test_conn_pause_is_seen_by_the_api_and_the_ui_run(app, monkeypatch, capsys):
    code, out = cli_json(monkeypatch, capsys, "pause", SYNC)
    assert code == 0 and out["syncs"][0]["paused"]
    status, body = call(app, "POST", f"/api/syncs/{SYNC}/run")
    assert status == 202 and body == {"sync": SYNC, "status": "started", "paused": True,
                                      "rejected_only": False}
    assert app.api.join(30)
    assert call(app, "GET", f"/api/syncs/{SYNC}/runs")[1]["runs"] == []
    assert cli_json(monkeypatch, capsys, "resume", SYNC)[1]["syncs"][0]["was_paused"]
    assert call(app, "POST", f"/api/syncs/{SYNC}/run")[0] == 202
    assert app.api.join(30)
    runs = call(app, "GET", f"/api/syncs/{SYNC}/runs")[1]["runs"]
    assert [r["status"] for r in runs] == ["rejected"]


def test_retry_from_the_api_sends_only_the_rejected_rows(app, monkeypatch, capsys):
    from tests import fakes

    assert run_cli(monkeypatch, capsys, "sync", "mem", "crm")[0] == 4
    fakes.RECEIVED.clear()
    people(roster(rename=" (renamed)"))  # every row changed; 7 and 23 still refused
    status, body = call(app, "POST", f"/api/syncs/{SYNC}/retry")
    assert status == 202 and body["rejected_only"] is True
    assert app.api.join(30)
    last = cli_json(monkeypatch, capsys, "runs", SYNC)[1]["runs"][0]
    assert last["status"] == "rejected" and last["report"]["rejected_only"] is True
    assert (last["rows_read"], last["rejected"], last["updated"]) == (2, 2, 0)
    # The renamed rows wait for the next run.
    assert [r for _, _, rows in fakes.RECEIVED for r in rows] == []
    assert run_cli(monkeypatch, capsys, "sync", "mem", "crm")[0] == 4
    assert len([r for _, _, rows in fakes.RECEIVED for r in rows]) == 30


def test_unknown_names_are_404_and_bad_parameters_400(app):
    assert call(app, "GET", "/api/syncs/nope")[0] == 404
    assert call(app, "POST", "/api/syncs/nope/pause", {})[0] == 404
    status, body = call(app, "GET", f"/api/syncs/{SYNC}/runs?limit=zero")
    assert status == 400 and "limit" in body["error"]["message"]
    assert call(app, "GET", "/api/nothing")[0] == 404
    assert call(app, "GET", f"/api/syncs/{SYNC}/pause")[0] == 405
    assert call(app, "POST", f"/api/syncs/{SYNC}/pause", ["not", "an object"])[0] == 400


def test_no_secret_value_is_ever_served(app, monkeypatch, capsys):
    # The token doubles as an e-mail the destination rejects: the rejection reason
    # carries it, and the CLI and the API both mask it.
    secret = "tok-9f8e7d6c5b4a@example.com"
    monkeypatch.setenv("UI_TEST_TOKEN", secret)
    people([*roster(), (99, secret, "Leaky", True)])
    (app.api.project_path).write_text(app.api.project_path.read_text().replace(
        '"bad23@example.com"', f'"bad23@example.com", "{secret}"'))
    run_cli(monkeypatch, capsys, "sync", "mem", "crm")
    for path in ("/api/syncs", f"/api/syncs/{SYNC}", f"/api/syncs/{SYNC}/rejected?key=99",
                 f"/api/syncs/{SYNC}/preview", "/api/people/99"):
        status, body = call(app, "GET", path)
        assert status == 200 and secret not in json.dumps(body), path
    rows = call(app, "GET", f"/api/syncs/{SYNC}/rejected?key=99")[1]["rejected"]
    assert rows and "INVALID_EMAIL" in rows[0]["reason"]


# --- who may ask ----------------------------------------------------------------------


def test_only_loopback_host_names_are_answered_without_a_token(app):
    assert call(app, "GET", "/api/syncs", headers={"Host": "localhost:8711"})[0] == 200
    status, body = call(app, "GET", "/api/syncs", headers={"Host": "attacker.example:8711"})
    assert status == 403 and "Host" in body["error"]["message"]
    status, _ = call(app, "GET", "/", headers={"Host": f"127.0.0.1:{PORT + 1}"})
    assert status == 403


@pytest.mark.parametrize("headers, why", [
    ({"X-Conn-CSRF": "guess"}, "CSRF"),
    ({"X-Conn-CSRF": ""}, "CSRF"),
    ({"Origin": "http://attacker.example"}, "cross-origin"),
    ({"Sec-Fetch-Site": "cross-site"}, "cross-site"),
    ({"Content-Type": "text/plain"}, "Content-Type"),
])
def test_state_changes_resist_csrf(app, headers, why):
    status, body = call(app, "POST", f"/api/syncs/{SYNC}/pause", {}, headers=headers)
    assert status == 403 and why in body["error"]["message"]
    assert call(app, "GET", "/api/syncs")[1]["syncs"][0]["paused"] is None


def test_the_page_carries_the_csrf_token_and_security_headers(app):
    resp = app.handle("GET", "/", {"Host": HOST})
    assert resp.status == 200 and app.guard.csrf.encode() in resp.body
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_with_a_token_every_api_call_needs_it_and_the_page_holds_none(ui_project, registry):
    app = UiApp(ui_project / "conn.yml", registry, Guard(PORT, token="t0ken"))
    page = app.handle("GET", "/", {"Host": "ui.example.com"})
    assert page.status == 200 and app.guard.csrf.encode() not in page.body
    assert call(app, "GET", "/api/syncs", headers={"Host": "ui.example.com"})[0] == 403
    bearer = {"Host": "ui.example.com", "Authorization": "Bearer t0ken"}
    assert call(app, "GET", "/api/syncs", headers=bearer)[0] == 200
    assert call(app, "GET", "/api/syncs", headers={**bearer,
                                                   "Authorization": "Bearer t0ke"})[0] == 403
    post = {**bearer, "Origin": "http://ui.example.com", "X-Conn-CSRF": ""}
    assert call(app, "POST", f"/api/syncs/{SYNC}/pause", {}, headers=post)[0] == 200
    assert call(app, "POST", f"/api/syncs/{SYNC}/resume", {},
                headers={**post, "Authorization": ""})[0] == 403


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.4", "::", "ui.example.com"])
def test_listening_beyond_loopback_needs_a_token(host):
    with pytest.raises(ConfigError, match="--token"):
        check_bind(host, None)
    check_bind(host, "t")
    for loop in ("127.0.0.1", "localhost", "::1"):
        check_bind(loop, None)


def test_static_files_only_from_the_package(app):
    assert app.handle("GET", "/static/app.js", {"Host": HOST}).status == 200
    for bad in ("/static/../api.py", "/static/.hidden", "/static/x/app.js", "/etc/passwd"):
        assert app.handle("GET", bad, {"Host": HOST}).status == 404, bad


def test_conn_pause_names_an_unknown_sync_and_changes_nothing(app, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "pause", SYNC, "nope")
    assert code == 3 and "no sync named 'nope'" in err
    assert call(app, "GET", "/api/syncs")[1]["syncs"][0]["paused"] is None
    code, out, _ = run_cli(monkeypatch, capsys, "resume", SYNC)
    assert code == 0 and "was not paused" in out
