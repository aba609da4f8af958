"""A trigger delivered as Slack messages (docs/traits.md, "Triggers"): the real runtime and
the slack plugin, against conn's fault server answering as Slack's incoming webhook
documents it (200 ``ok``; 429 with ``Retry-After``). One message per crossing, with the
template's fields; a person without consent is never posted; a throttled message is
retried, not lost or doubled; the webhook URL is in no report or log."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

slack_plugin = pytest.importorskip("conn_destination_slack.plugin")

HOOK = "/services/T0CONN000/B0CONN000/trigger-hook-secret-0001"


def _project(folder: Path, url: str) -> Path:
    doc = {
        "version": 1,
        "sources": {"wh": {"type": "memory"}},
        "destinations": {"alerts": {"type": "slack", "purposes": ["service"], "config": {
            "webhook_url": url + HOOK, "identifiers": ["customer_id"],
            "rate_limit": {"requests": 100}, "retry_base_delay": 0.01,
            "text": ":warning: {customer_id} ({plan}): health {health}, {event}"}}},
        "triggers": {"health_dropped": {"watch": "health", "below": 40, "rearm": 50}},
        "syncs": {"health_to_slack": {
            "source": "wh", "stream": "customers", "primary_key": "id",
            "destination": "alerts", "object": "messages", "mode": "events",
            "match_key": "customer_id", "trigger": "health_dropped",
            "event": {"name": "health_dropped", "time_from": "trigger_at"},
            "consent": {"columns": {"service": "ok"}},
            "mapping": {"customer_id": "id", "plan": "plan", "health": "health"}}},
    }
    folder.mkdir(parents=True)
    (folder / "conn.yml").write_text(yaml.safe_dump(doc))
    return folder / "conn.yml"


def test_trigger_posts_one_message_per_crossing(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    from conn.config.load import load_project
    from conn.plugins import Registry
    from conn.runtime.runner import run_syncs
    from conn.state.backends.memory import MemoryStateStore
    from conn.testing.http import FaultServer, RecordedRequest, Reply

    from tests import fakes

    caplog.set_level(logging.DEBUG)
    fakes.reset()
    reg = Registry(autoload=False)
    reg.add_module(fakes)
    reg.add_module(slack_plugin)
    posted: list[str] = []

    def hook(req: RecordedRequest, srv: FaultServer) -> Reply:
        posted.append(req.json["text"])
        return Reply(200, body=b"ok", headers={"Content-Type": "text/html"})

    store = MemoryStateStore()
    with FaultServer(seed=0) as srv:
        srv.route("POST", HOOK, hook)
        project = load_project(_project(tmp_path / "p", srv.url), registry=reg)

        def run(health: list[float], ok: list[str]) -> list[str]:
            fakes.TABLES["customers"] = (pa.table({
                "id": [f"c{i}" for i in range(len(health))],
                "plan": ["pro & <b>"] * len(health),
                "health": pa.array(health, pa.float64()), "ok": ok}), ("id",))
            posted.clear()
            report = run_syncs(project, list(project.syncs.values()), reg, store=store)
            assert report.syncs[0].status == "ok", report.syncs[0].error
            return sorted(posted)

        assert run([60, 60, 60], ["yes", "yes", "no"]) == []           # first sight
        srv.configure(schedule=[Reply(429, body=b"", headers={"Retry-After": "0.01"})])
        assert run([30, 60, 20], ["yes", "yes", "no"]) == [             # c0 crosses;
            ":warning: c0 (pro &amp; &lt;b&gt;): health 30, health_dropped"]  # c2 withheld
        assert run([20, 35, 20], ["yes", "yes", "no"]) == [             # c0 stays down
            ":warning: c1 (pro &amp; &lt;b&gt;): health 35, health_dropped"]
        assert run([20, 35, 10], ["yes", "yes", "yes"]) == [            # consent given
            ":warning: c2 (pro &amp; &lt;b&gt;): health 10, health_dropped"]
        assert run([55, 35, 10], ["yes", "yes", "yes"]) == []           # c0 re-arms
        assert run([39, 35, 10], ["yes", "yes", "yes"]) == [
            ":warning: c0 (pro &amp; &lt;b&gt;): health 39, health_dropped"]
        statuses = [r.status for r in srv.requests]
    assert statuses.count(429) == 1 and statuses.count(200) == 4
    assert "trigger-hook-secret" not in caplog.text
