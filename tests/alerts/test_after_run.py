"""Alerts after real runs (run_syncs on the in-process fakes), delivered to a real SMTP
server and a loopback webhook receiver: failure, rejected share, volume, cooldown,
resolved notice, delivery failures that leave the sync alone, and secrets kept out."""

from __future__ import annotations

import contextlib
import json
import logging

import pytest
from conn.alerts.engine import TOPIC
from conn.destination import WriteResult
from conn.errors import RetryLater
from conn.runtime.runner import RunOptions, open_state_store, run_syncs

from tests import fakes
from tests.alerts.conftest import HOOK_TOKEN, SMTP_PASSWORD
from tests.alerts.smtp import free_port
from tests.runtime.test_runtime import BASE_ROWS, people

# aiosmtpd warns that AUTH without TLS is unsafe: true, and fine on loopback.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

FAILED_RULE = """
down:
  when: failed
"""


def run(project, registry):
    return run_syncs(project, list(project.syncs.values()), registry, RunOptions())


def fail_writes(request) -> WriteResult:
    raise RetryLater("the CRM is down (HTTP 503)")


def states(project, registry) -> dict:
    with contextlib.closing(open_state_store(project, registry)) as store:
        notes = store.notes()
        assert notes is not None
        return notes.read(TOPIC)


@pytest.mark.slow  # four runs (~3 s)
def test_failure_fires_once_then_resolves(alerting, registry, mail, hook):
    _, box = mail
    people(BASE_ROWS)
    project = alerting(FAILED_RULE)
    fakes.WRITE_HOOK.append(fail_writes)
    report = run(project, registry)
    assert report.syncs[0].status == "failed"
    assert [(d.channel, d.kind, d.ok) for d in report.alerts] == [
        ("mail", "firing", True), ("hook", "firing", True)]
    assert len(box.messages) == 1
    msg = box.messages[0]
    assert msg.recipients == ["ops@example.com"]
    assert msg.subject == f"[conn] ALERT down: sync people_to_crm run {report.run.run_id}"
    assert f"http://127.0.0.1:8765/runs/{report.run.run_id}?sync=people_to_crm" in msg.body
    body = hook.requests[0].json
    assert (body["kind"], body["rule"], body["sync"], body["status"]) == (
        "firing", "down", "people_to_crm", "failed")
    assert body["run_id"] == report.run.run_id
    assert hook.requests[0].header("authorization") == f"Bearer {HOOK_TOKEN}"
    # Failing again within the cooldown: nothing sent, the held-back notice counted.
    report = run(project, registry)
    assert report.syncs[0].status == "failed" and report.alerts == []
    assert len(box.messages) == 1 and len(hook.requests) == 1
    state = states(project, registry)["down/people_to_crm"]
    assert (state["state"], state["sent"], state["suppressed"]) == ("firing", 1, 1)
    # Recovered: one resolved notice, then quiet.
    fakes.WRITE_HOOK.clear()
    report = run(project, registry)
    assert report.syncs[0].status == "ok"
    assert [(d.kind, d.ok) for d in report.alerts] == [("resolved", True)] * 2
    assert box.messages[1].subject.startswith("[conn] RESOLVED down: sync people_to_crm")
    assert hook.requests[1].json["kind"] == "resolved"
    assert run(project, registry).alerts == []
    assert states(project, registry)["down/people_to_crm"]["state"] == "ok"


def test_cooldown_elapsed_sends_a_reminder(alerting, registry, mail):
    _, box = mail
    people(BASE_ROWS)
    project = alerting(FAILED_RULE.replace("when: failed", "when: failed\n  cooldown: 0s"))
    fakes.WRITE_HOOK.append(fail_writes)
    run(project, registry)
    run(project, registry)
    assert len(box.messages) == 2
    assert states(project, registry)["down/people_to_crm"]["sent"] == 2


def test_rejected_share_above_threshold_fires(alerting, registry, mail, hook):
    _, box = mail
    # 1 of 4 consented rows is rejected by the destination: 25%.
    people([*BASE_ROWS, (5, "bad@example.com", "Bo", True)])
    project = alerting("""
invalid:
  when: rejected_share
  above: 0.2
  channels: [hook]
lenient:
  when: rejected_share
  above: 0.25
  channels: [hook]
""")
    report = run(project, registry)
    rep = report.syncs[0]
    assert (rep.status, rep.rejected, rep.sent) == ("rejected", 1, 3)
    assert [(d.rule, d.channel) for d in report.alerts] == [("invalid", "hook")]
    body = hook.requests[0].json
    assert body["figures"] == {"rejected": 1, "of": 4, "share": 0.25, "threshold": 0.2}
    assert box.messages == []


def test_volume_deviation_fires_against_the_run_history(alerting, registry, hook):
    people(BASE_ROWS)
    project = alerting("""
volume:
  when: volume
  window: 4
  min_runs: 3
  percent: 50
  channels: [hook]
""")
    # Three past runs that each sent 100 rows, one failed run that sent none (skipped).
    with contextlib.closing(open_state_store(project, registry)) as store:
        for i, (status, n) in enumerate([("ok", 100), ("ok", 100), ("failed", 0),
                                         ("rejected", 100)]):
            store.record_run("people_to_crm", f"past{i}", {"status": status,
                                                          "inserted": n})
    report = run(project, registry)  # sends 3 rows: far below 50..150
    assert report.syncs[0].sent == 3
    assert [d.kind for d in report.alerts] == ["firing"]
    figures = hook.requests[0].json["figures"]
    assert figures == {"rows_sent": 3, "median": 100.0, "low": 50.0, "high": 150.0,
                       "runs": 3}


def test_delivery_failure_never_fails_the_sync(alerting, registry, mail, hook, caplog,
                                               tmp_path):
    from conn.config import load_project
    from conn.testing.http import Reply

    people(BASE_ROWS)
    alerting(FAILED_RULE)
    # The SMTP server's port closed, the webhook answering 400: neither takes it.
    yml = tmp_path / "conn.yml"
    yml.write_text(yml.read_text().replace(f"port: {mail[0]}", f"port: {free_port()}"))
    project = load_project(yml, registry=registry)
    hook.configure(handler=lambda req, srv: Reply(400, json={"error": "nope"}))
    fakes.WRITE_HOOK.append(fail_writes)
    caplog.set_level(logging.WARNING, logger="conn.alerts")
    report = run(project, registry)
    assert report.syncs[0].status == "failed"  # the run's own outcome, nothing more
    assert [(d.channel, d.ok) for d in report.alerts] == [("mail", False), ("hook", False)]
    assert "HTTP 400" in caplog.text and "channel 'hook'" in caplog.text
    assert "channel 'mail' (email): ConnectionRefusedError" in caplog.text
    # A run that goes well is unaffected by the channels too.
    fakes.WRITE_HOOK.clear()
    report = run(project, registry)
    assert report.syncs[0].status == "ok" and report.alerts == []


@pytest.mark.slow  # the webhook's 503s are retried with backoff (~3 s)
def test_no_channel_takes_it_then_it_is_sent_after_the_next_run(alerting, registry,
                                                                  hook, caplog, tmp_path):
    from conn.testing.http import Reply

    people(BASE_ROWS)
    project = alerting(FAILED_RULE.replace("when: failed", "when: failed\n  channels: [hook]"))
    hook.configure(handler=lambda req, srv: Reply(503, json={}))
    fakes.WRITE_HOOK.append(fail_writes)
    caplog.set_level(logging.WARNING, logger="conn.alerts")
    report = run(project, registry)
    assert report.syncs[0].status == "failed"
    assert [d.ok for d in report.alerts] == [False]
    assert len(hook.requests) > 1  # 503 is retried by conn's HTTP client
    assert "not delivered" in caplog.text
    state = states(project, registry)["down/people_to_crm"]
    assert state["state"] == "ok" and "HTTP 503" in state["last_error"]
    hook.configure(handler=lambda req, srv: Reply(200, json={}))
    report = run(project, registry)
    assert [(d.kind, d.ok) for d in report.alerts] == [("firing", True)]


def test_secrets_stay_out_of_alerts_logs_and_state(alerting, registry, mail, hook,
                                                   caplog, monkeypatch, capsys, tmp_path):
    from conn.testing.http import Reply

    from tests.cli.test_cli import run_cli

    _, box = mail
    people(BASE_ROWS)
    alerting(FAILED_RULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONN_LOG_LEVEL", "DEBUG")
    fakes.WRITE_HOOK.append(fail_writes)
    hook.configure(handler=lambda req, srv: Reply(404, json={}))
    caplog.set_level(logging.DEBUG)
    seen = []
    for args in (["sync", "mem", "crm"], ["alerts", "list"], ["alerts", "list", "--json"],
                 ["alerts", "test"]):
        code, out, err = run_cli(monkeypatch, capsys, *args)
        assert code == (0 if args[1] == "list" else 1), (args, out, err)
        seen += [out, err]
    assert len(box.messages) == 2  # the failure, the test notice
    assert mail[1].logins == [("alerts", SMTP_PASSWORD)] * 2  # it did log in with it
    assert "HTTP 404" in caplog.text and "POST ***" in caplog.text
    texts = [*seen, caplog.text, json.dumps(states_of(tmp_path, registry)),
             *(m.raw.decode() for m in box.messages),
             *(r.body.decode() for r in hook.requests)]
    for text in texts:
        assert SMTP_PASSWORD not in text
        assert HOOK_TOKEN not in text
        assert "T0KEN-in-the-path-4711" not in text
        # No row value either: the people's e-mails and names.
        assert "a@example.com" not in text and "Ann" not in text


def states_of(folder, registry) -> dict:
    from conn.config import load_project

    return states(load_project(folder / "conn.yml", registry=registry), registry)
