"""The profiles, triggers and experiments pages' API (docs/ui.md) answers what ``conn
profiles stats|show``, ``conn triggers`` and ``conn experiments list|report`` print
with ``--json`` (one function each), on the demo project after profile builds, fired
triggers and a holdout run."""

from __future__ import annotations

import json

import pytest

from tests.ui.conftest import DROPPED, MERGING, MERGING_DEVICE, call

pytestmark = pytest.mark.slow
OUTCOME = "SELECT customer_id FROM product_events WHERE event_type = 'purchase'"


def cli_json(monkeypatch, capsys, demo, *args: str) -> dict:
    from tests.cli.test_cli import run_cli

    code, out, err = run_cli(monkeypatch, capsys, *args, "--json", "-p", str(demo))
    assert code == 0, err
    return json.loads(out)


def test_profiles_are_what_the_cli_prints(demo_app, demo, monkeypatch, capsys):
    status, body = call(demo_app, "GET", "/api/profiles")
    assert status == 200 and body == cli_json(monkeypatch, capsys, demo, "profiles", "stats")
    people = body["sets"][0]
    assert people["set"] == "people" and people["profiles"] > 0
    assert sum(b["profiles"] for b in people["sizes"]) == people["profiles"]
    assert people["junk"] and people["junk"][0]["value"] == "test@test.com"
    status, body = call(demo_app, "GET", f"/api/profiles/{MERGING}")
    assert status == 200
    assert body == cli_json(monkeypatch, capsys, demo, "profiles", "show", MERGING)
    (merged,) = body["profiles"]  # the visitor's profile merged into the app user's
    assert {i["value"] for i in merged["identities"]} == {
        MERGING, MERGING_DEVICE, "mia.merge@example.com"}
    assert {e for i in merged["identities"] for e in i["edges"]} == {"app", "web"}
    merges = [h for h in merged["history"] if h["kind"] == "merge"]
    assert len(merges) == 1 and merges[0]["new_id"] == merged["profile_id"], merged
    assert merges[0]["old_id"] != merged["profile_id"]
    status, body = call(demo_app, "GET", "/api/profiles/nobody@nowhere.example")
    assert status == 404 and "no profile holds" in body["error"]["message"]


def test_triggers_are_what_the_cli_prints(demo_app, demo, monkeypatch, capsys):
    status, body = call(demo_app, "GET", "/api/triggers")
    assert status == 200 and body == cli_json(monkeypatch, capsys, demo, "triggers")
    (trig,) = body["triggers"]
    assert trig["name"] == "health_dropped"
    assert trig["definition"] == {"watch": "health", "below": 40, "rearm": 50,
                                  "cooldown": "7d"}
    (sync,) = trig["syncs"]
    assert sync["sync"] == "health_alerts" and sync["runs"] == 2
    assert trig["events_fired"] >= len(DROPPED) and trig["events_delivered"] >= len(DROPPED)
    assert trig["events_fired"] == sync["events_fired"] == sync["events_sent"]
    assert {str(c) for c in DROPPED} <= {r["key"] for r in sync["recent"]}
    assert sync["recent"] == sorted(sync["recent"], key=lambda r: r["fired_at"],
                                    reverse=True)
    status, one = call(demo_app, "GET", "/api/triggers/health_dropped?recent=1")
    assert status == 200 and len(one["triggers"][0]["syncs"][0]["recent"]) == 1
    assert one == cli_json(monkeypatch, capsys, demo, "triggers", "health_dropped",
                           "--recent", "1")
    assert call(demo_app, "GET", "/api/triggers/nope")[0] == 404
    assert call(demo_app, "GET", "/api/triggers?recent=-1")[0] == 400


def test_experiments_are_what_the_cli_prints(demo_app, demo, monkeypatch, capsys):
    from urllib.parse import quote

    status, body = call(demo_app, "GET", "/api/experiments")
    assert status == 200 and body == cli_json(monkeypatch, capsys, demo, "experiments",
                                              "list")
    (exp,) = body["experiments"]
    assert exp["name"] == "customers_to_crm" and exp["holdout"] > 0
    status, body = call(demo_app, "GET", f"/api/experiments/customers_to_crm/report"
                        f"?outcome={quote(OUTCOME)}&alpha=0.1")
    assert status == 200, body
    assert body == cli_json(monkeypatch, capsys, demo, "experiments", "report",
                            "customers_to_crm", "--outcome", OUTCOME, "--alpha", "0.1")
    assert body["treatment"]["members"] == exp["treatment"]
    assert body["holdout"]["members"] == exp["holdout"]
    assert 0 <= body["p_value"] <= 1 and body["alpha"] == 0.1
    assert call(demo_app, "GET", "/api/experiments/customers_to_crm/report")[0] == 400
    assert call(demo_app, "GET", "/api/experiments/nope/report?outcome=x")[0] == 404
