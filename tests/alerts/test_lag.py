"""Lag rules (docs/alerts.md, "Lag of a followed sync"): the verdicts against a plain
model of the rule over random check sequences, and a real ``conn sync --follow`` on the
local NATS server whose slow webhook makes the lag grow and shrink again, with the
notices caught by a loopback webhook channel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from conn.alerts.lag import lag_verdict
from conn.config.alerts import Rule
from conn.streaming import SourceLag
from hypothesis import given, settings
from hypothesis import strategies as st


def model(checks: list[tuple[float, int | None]], limit: int, hold: float
          ) -> list[bool | None]:
    """The rule as docs/alerts.md states it, from the whole history at each check:
    unknown lag -> not judged; at or below the limit -> not firing; above it -> firing
    once every known value since the first of this stretch above the limit was above
    it for at least ``hold`` seconds, not judged before."""
    out: list[bool | None] = []
    for i, (now, value) in enumerate(checks):
        if value is None:
            out.append(None)
            continue
        if value <= limit:
            out.append(False)
            continue
        start = now
        for t, v in reversed(checks[:i]):
            if v is None:
                continue
            if v <= limit:
                break
            start = t
        out.append(True if now - start >= hold else None)
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.1, 5.0), st.none() | st.integers(0, 20)),
                max_size=30),
       st.integers(0, 20), st.sampled_from([0.0, 1.0, 2.5, 7.0]))
def test_verdicts_follow_the_model(steps, limit, hold):
    rule = Rule("lagging", "lag", ("hook",), None, 3600.0, above_messages=limit,
                for_seconds=hold)
    checks, now = [], 1000.0
    for gap, value in steps:
        now += gap
        checks.append((now, value))
    since = None
    got = []
    for t, value in checks:
        verdict, since = lag_verdict(rule, SourceLag(messages=value), since, t)
        got.append(verdict.firing)
    assert got == model(checks, limit, hold)


def test_a_threshold_the_source_does_not_report_is_not_judged():
    rule = Rule("lagging", "lag", ("hook",), None, 60.0, above_seconds=5.0)
    verdict, since = lag_verdict(rule, SourceLag(messages=10**6), None, 1.0)
    assert verdict.firing is None and since is None


def test_a_lag_rule_is_not_judged_on_a_run():
    from conn.alerts.rules import evaluate

    rule = Rule("lagging", "lag", ("hook",), None, 60.0, above_messages=0)
    for status in ("ok", "failed", "rejected"):
        assert evaluate(rule, {"status": status, "rows_read": 5}, []).firing is None


@pytest.mark.slow
@pytest.mark.services
@pytest.mark.parametrize("runner", ["sync --follow", "serve"])
def test_a_followed_sync_lagging_behind_fires_then_resolves(tmp_path, fault_server, runner,
                                                           nats_stream):
    """A NATS stream followed into a slow webhook, by ``conn sync --follow`` and by
    ``conn serve`` (``follow: true``): 400 messages at once keep more than 40
    unacknowledged for seconds, so the lag rule fires (once: the cooldown holds back
    reminders) to the webhook channel, and is resolved once the follower caught up. The
    notices name the rule and sync and carry the lag; no run rule fires on the
    follower's run; ``conn serve`` counts both notices in /metrics."""
    from tests import follow_kit as kit
    from tests.test_follow_nats import DURABLE, project

    server, stream = nats_stream
    serve = runner == "serve"
    project(tmp_path, stream, hook_url=fault_server.url + "/hook", follow=serve)
    doc = yaml.safe_load((tmp_path / "conn.yml").read_text())
    doc["alerts"] = {"channels": {"ops": {"type": "webhook",
                                          "url": fault_server.url + "/alerts"}},
                     "rules": {"lagging": {"when": "lag", "above_messages": 40,
                                           "for_seconds": 1, "cooldown": "1h"},
                               "broken": {"when": "failed"}}}
    (tmp_path / "conn.yml").write_text(yaml.safe_dump(doc))
    fault_server.configure(delay=0.5)  # about 80 messages a second get through

    def notices() -> list[dict]:
        return [r.json for r in fault_server.requests if r.path == "/alerts"]

    def flow(wait: Callable[[Callable[[], Any], float], Any]) -> None:
        wait(lambda: server.consumer(stream, DURABLE).num_waiting > 0, 60)
        server.publish(f"{stream}.people", kit.people(0, 400))
        wait(lambda: [n["kind"] for n in notices()] == ["firing", "resolved"], 60)
        assert kit.received_ids(fault_server.requests) == set(range(400))

    if serve:
        from tests.serve.helpers import Serve, metric

        proc = Serve(tmp_path)
        try:
            flow(lambda cond, seconds: proc.wait_for(_quiet(cond), seconds))

            def counted() -> bool:  # counted once the channel answered
                samples = proc.metrics()
                return all(metric(samples, "conn_alerts_sent_total", sync="q2f",
                                  rule="lagging", channel="ops", kind=kind) == 1
                           for kind in ("firing", "resolved"))

            proc.wait_for(counted, 10)
        finally:
            code, _ = proc.stop()
        assert code == 0, "\n".join(proc.lines + proc.err)
    else:
        follower = kit.start(tmp_path, "queue", "hook")
        try:
            flow(lambda cond, seconds: kit.eventually(
                _quiet(cond), seconds, what=lambda: f"notices: {notices()}; exit "
                f"{follower.poll()}"))
        finally:
            code, err = kit.stop(follower)
        assert code == 130, err
    firing, resolved = notices()
    assert (firing["rule"], firing["sync"], firing["status"]) == ("lagging", "q2f",
                                                                  "running")
    assert firing["figures"]["messages"] > 40, firing
    assert "messages" in firing["summary"] and "above 40" in firing["summary"]
    assert resolved["figures"]["messages"] <= 40, resolved
    assert len(notices()) == 2  # no run rule fired on the stopped run


def _quiet(cond: Callable[[], Any]) -> Callable[[], Any]:
    """``cond``, false while it raises (the consumer does not exist yet)."""
    def check() -> Any:
        try:
            return cond()
        except Exception:
            return False

    return check
