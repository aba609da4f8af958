"""Run rules on a followed sync (docs/alerts.md, "Followed syncs"): each segment of a
follow that ends is judged like a batch run. A real ``conn serve`` follows a NATS
stream (``follow: true``) into a webhook that rejects a fifth of the rows; the
rejected-share rule fires once to a loopback webhook channel, and when the follower
starts again and its next segment rejects as many, the cooldown holds the reminder
back. In process, a follow cut into short segments fires and then resolves."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml

from tests.alerts.test_lag import _quiet


@pytest.mark.slow
@pytest.mark.services
def test_a_followed_sync_rejecting_a_share_of_rows_alerts_once(tmp_path, fault_server,
                                                               nats_stream):
    from tests import follow_kit as kit
    from tests.serve.helpers import Serve
    from tests.test_follow_nats import DURABLE, project

    server, stream = nats_stream
    bad = {i for i in range(200) if i % 5 == 0}  # 20 % of the rows, 10 % the threshold
    fault_server.configure(reject=sorted(bad), reject_mode="batch")
    project(tmp_path, stream, hook_url=fault_server.url + "/hook", follow=True)
    doc = yaml.safe_load((tmp_path / "conn.yml").read_text())
    doc["alerts"] = {"channels": {"ops": {"type": "webhook",
                                          "url": fault_server.url + "/alerts"}},
                     "rules": {"many_rejected": {"when": "rejected_share",
                                                 "above": 0.1, "cooldown": "1h"},
                               "broken": {"when": "failed"}}}
    (tmp_path / "conn.yml").write_text(yaml.safe_dump(doc))

    def notices() -> list[dict]:
        return [r.json for r in fault_server.requests if r.path == "/alerts"]

    def segment(lo: int, hi: int) -> None:
        """Follow with conn serve until rows lo..hi-1 were answered, then stop."""
        before = len(notices())
        proc = Serve(tmp_path)
        try:
            proc.wait_for(_quiet(lambda: server.consumer(stream, DURABLE)
                                 .num_waiting > 0), 60)
            server.publish(f"{stream}.people", kit.people(lo, hi))
            want = set(range(lo, hi)) - bad
            proc.wait_for(lambda: want <= kit.received_ids(fault_server.requests), 60)
            proc.wait_for(lambda: bad & set(range(lo, hi))
                          <= _refused_alone(fault_server.requests), 60)
            # While it follows, no run rule is judged: the segment has not ended.
            assert len(notices()) == before
        finally:
            code, _ = proc.stop()
        assert code == 0, "\n".join(proc.lines + proc.err)

    segment(0, 100)
    assert [(n["kind"], n["rule"], n["sync"]) for n in notices()] == [
        ("firing", "many_rejected", "q2f")]
    first = notices()[0]
    # Rows still in flight at the stop stay pending; every refused row was answered.
    assert first["figures"]["rejected"] == 20, first
    assert first["figures"]["share"] > 0.1 and f"20 of {first['figures']['of']}" \
        in first["summary"], first
    segment(100, 200)  # rejects as many again: held back by the cooldown
    time.sleep(0.5)
    assert len(notices()) == 1, notices()
    listed = subprocess.run([kit.CONN, "alerts", "list", "--json", "-p",
                             str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    rule = next(r for r in json.loads(listed.stdout)["rules"]
                if r["rule"] == "many_rejected")
    state = next(s for s in rule["states"] if s["sync"] == "q2f")
    assert state["state"] == "firing" and state["suppressed"] == 1, state


def _refused_alone(requests) -> set[int]:
    """Ids the webhook refused in a request of their own (the destination then holds
    the row as rejected)."""
    return {r.json["records"][0]["id"] for r in requests
            if r.path == "/hook" and r.status == 400 and r.json
            and len(r.json.get("records", [])) == 1}


def test_each_segment_is_judged_as_it_ends(tmp_path, hook, monkeypatch):
    """In process, segments of 0.3 s: the segment where one row of two is rejected
    fires the rule while the follower goes on; a later segment with nothing rejected
    resolves it. Nothing is judged before a segment ends."""
    import pyarrow as pa
    from conn.runtime import streaming
    from conn.testing.sync import SyncHarness

    from tests import fakes
    from tests.test_streaming import MAPPING, SCHEMA, eventually, person

    monkeypatch.setattr(streaming, "SEGMENT_SECONDS", 0.3)
    fakes.reset()

    def notices() -> list[str]:
        return [r.json["kind"] for r in hook.requests if r.path == "/alerts"]

    with SyncHarness(tmp_path) as h:
        h.destination("crm", fakes.RecordingDestination, {"reject": ["p1@example.com"]})
        h.stream("people", pa.Table.from_pylist([], schema=SCHEMA), primary_key="id")
        h.sections["alerts"] = {
            "channels": {"hook": {"type": "webhook", "url": hook.url + "/alerts"}},
            "rules": {"many_rejected": {"when": "rejected_share", "above": 0.1,
                                        "cooldown": "1h"}}}
        f = h.follow("crm", "people", object="contacts", match_key="email",
                     mapping=MAPPING, max_latency_ms=20)
        try:
            h.changes("people", [person(1), person(2)], ["insert", "insert"])
            assert f.wait_rows(2)
            assert eventually(lambda: notices() == ["firing"], 10), notices()
            # The next segments reject nothing (sent or not): resolved.
            h.changes("people", [person(3)], ["insert"])
            assert eventually(lambda: notices() == ["firing", "resolved"], 10), notices()
        finally:
            rep = f.stop()
        assert rep.status in ("ok", "rejected"), rep.error
        assert notices() == ["firing", "resolved"]
    fakes.reset()
