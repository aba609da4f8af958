"""``conn alerts list`` / ``conn alerts test`` as people run them, and a scheduled run of
``conn serve`` counting its notices in /metrics."""

from __future__ import annotations

import json
import threading

import pytest
from conn.serve.jobs import JobContext, ScheduledSyncJob
from conn.serve.metrics import Metrics
from conn.testing.http import Reply
from prometheus_client.parser import text_string_to_metric_families

from tests import fakes
from tests.alerts.test_after_run import FAILED_RULE, fail_writes
from tests.cli.test_cli import run_cli
from tests.runtime.test_runtime import BASE_ROWS, people

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def test_list_shows_rules_and_their_last_state(alerting, registry, mail, hook, tmp_path,
                                               monkeypatch, capsys):
    people(BASE_ROWS)
    alerting(FAILED_RULE + "big:\n  when: volume\n  percent: 20\n  channels: [hook]\n")
    monkeypatch.chdir(tmp_path)
    fakes.WRITE_HOOK.append(fail_writes)
    code, out, err = run_cli(monkeypatch, capsys, "sync", "mem", "crm", "--json")
    assert code != 0
    assert json.loads(out)["alerts"] == [
        {"rule": "down", "sync": "people_to_crm", "channel": channel, "kind": "firing",
         "ok": True, "error": None} for channel in ("mail", "hook")]
    code, out, err = run_cli(monkeypatch, capsys, "alerts", "list", "--json")
    assert code == 0, err
    listed = json.loads(out)
    rules = {r["rule"]: r for r in listed["rules"]}
    assert rules["down"]["channels"] == ["mail", "hook"] and rules["down"]["syncs"] == "all"
    [state] = rules["down"]["states"]
    assert (state["sync"], state["state"], state["sent"]) == ("people_to_crm", "firing", 1)
    assert rules["big"]["states"] == [] and "20% of the median" in rules["big"]["describe"]
    assert {c["channel"]: c["type"] for c in listed["channels"]} == {"mail": "email",
                                                                     "hook": "webhook"}
    code, out, _ = run_cli(monkeypatch, capsys, "alerts", "list")
    assert code == 0 and "down" in out and "firing" in out


def test_test_sends_through_a_rules_channels(alerting, registry, mail, hook, tmp_path,
                                             monkeypatch, capsys):
    _, box = mail
    alerting(FAILED_RULE.replace("when: failed", "when: failed\n  channels: [mail]"))
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "alerts", "test", "down", "--json")
    assert code == 0, err
    assert json.loads(out) == {"ok": True, "deliveries": [
        {"channel": "mail", "ok": True, "error": None}]}
    assert [m.subject for m in box.messages] == ["[conn] TEST down: sync (test)"]
    assert hook.requests == []
    code, out, err = run_cli(monkeypatch, capsys, "alerts", "test", "nope")
    assert code == 3 and "conn.yml: alerts.rules: no alert rule named 'nope'" in err


def test_test_fails_when_a_channel_cannot_deliver(alerting, registry, hook, tmp_path,
                                                  monkeypatch, capsys):
    alerting(FAILED_RULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ALERT_SMTP_PASSWORD")
    hook.configure(handler=lambda req, srv: Reply(200, json={}))
    code, out, err = run_cli(monkeypatch, capsys, "alerts", "test")
    assert code == 1 and "the test notice did not reach mail" in err
    assert "hook: sent" in out
    assert "mail: FAILED" in out and "ALERT_SMTP_PASSWORD is not set" in out
    assert hook.requests[0].json["kind"] == "test"


def test_no_alerts_section_is_a_clear_error(tmp_path, registry, monkeypatch, capsys):
    from tests.runtime.test_runtime import PROJECT

    (tmp_path / "conn.yml").write_text(PROJECT.replace("MODE", "upsert"))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "alerts", "list")
    assert code == 3 and "conn.yml: alerts: no 'alerts:' section" in err


def test_serve_counts_notices_and_failures_in_metrics(alerting, registry, mail, hook):
    from tests.runtime.test_runtime import PROJECT

    people(BASE_ROWS)
    project = alerting(FAILED_RULE, PROJECT + "    schedule: {every: 1m}\n")
    hook.configure(handler=lambda req, srv: Reply(400, json={}))
    fakes.WRITE_HOOK.append(fail_writes)
    ctx = JobContext(project, registry, Metrics())
    out = ScheduledSyncJob(project.syncs["people_to_crm"], ctx).run(threading.Event())
    assert out.status == "failed"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(ctx.metrics.exposition().decode())
               for s in fam.samples}
    base = (("rule", "down"),)
    assert samples[("conn_alerts_sent_total", (("channel", "mail"), ("kind", "firing"),
                                               *base, ("sync", "people_to_crm")))] == 1
    assert samples[("conn_alerts_failed_total", (("channel", "hook"), *base,
                                                 ("sync", "people_to_crm")))] == 1


def test_slack_channel_gets_slacks_body(tmp_path, registry, hook):
    from conn.config import load_project
    from conn.runtime.runner import RunOptions, run_syncs

    from tests.runtime.test_runtime import PROJECT

    people(BASE_ROWS)
    (tmp_path / "conn.yml").write_text(PROJECT.replace("MODE", "upsert") + f"""\
alerts:
  link: "https://conn.example.com/runs/{{run_id}}"
  channels:
    team: {{type: slack, url: "{hook.url}/services/T0/B0/XyZsecret"}}
  rules:
    down: {{when: failed, syncs: [people_to_crm]}}
""")
    project = load_project(tmp_path / "conn.yml", registry=registry)
    fakes.WRITE_HOOK.append(fail_writes)
    report = run_syncs(project, list(project.syncs.values()), registry, RunOptions())
    run_id, rep = report.run.run_id, report.syncs[0]
    assert [(d.channel, d.ok) for d in report.alerts] == [("team", True)]
    why = f" ({rep.error_type})" if rep.error_type else ""
    assert hook.requests[0].path == "/services/T0/B0/XyZsecret"
    assert hook.requests[0].json == {"text": (
        f":rotating_light: <https://conn.example.com/runs/{run_id}|ALERT down: sync "
        f"people_to_crm run {run_id}>\nrun failed{why}\nrows_read 4, "
        "consent_denied 1, inserted 0, updated 0, deleted 0, unchanged 0, rejected 0, "
        f"pending 3, seconds {rep.seconds}")}
