"""A scheduled sync job is one ordinary sync run: its outcome and the metrics it leaves
(rows read, sent, rejected, withheld by reason, runs by status) are the run's report;
a run refused for its configuration is ``refused``. Events print in the three documented
forms, redacted."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from conn import secrets
from conn.config import load_project
from conn.serve.events import Events
from conn.serve.jobs import JobContext, ScheduledSyncJob, jobs_for
from conn.serve.metrics import Metrics
from prometheus_client.parser import text_string_to_metric_families

from tests import fakes

PROJECT = """\
version: 1
sources:
  mem: {type: memory}
destinations:
  crm:
    type: recorder
    purposes: [marketing]
    config: {reject: ["bad@example.com"], batch_size: 2}
syncs:
  people_to_crm:
    source: mem
    stream: people
    destination: crm
    object: contacts
    primary_key: id
    match_key: email
    consent: {columns: {marketing: opt_in}}
    mapping: {email: email, name: NAME}
    schedule: {every: 1m}
  by_hand:
    source: mem
    stream: people
    destination: crm
    object: contacts
    primary_key: id
    match_key: email
    consent: {columns: {marketing: opt_in}}
    mapping: {email: email}
"""


@pytest.fixture
def ctx(tmp_path: Path, registry):
    fakes.TABLES["people"] = (pa.table({
        "id": pa.array([1, 2, 3, 4, 5], pa.int64()),
        "email": ["a@example.com", "bad@example.com", "c@example.com", "d@example.com",
                  "e@example.com"],
        "name": ["Ann", "Ben", "Cy", "Di", "Ed"],
        "opt_in": [True, True, False, None, True],
    }), ("id",))

    def make(name: str = "name") -> JobContext:
        (tmp_path / "conn.yml").write_text(PROJECT.replace("NAME", name))
        proj = load_project(tmp_path / "conn.yml", registry=registry)
        return JobContext(proj, registry, Metrics())
    return make


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(metrics.exposition().decode())
            for s in fam.samples}


def test_only_scheduled_syncs_become_jobs(ctx):
    c = ctx()
    jobs, idle = jobs_for(c.project, c)
    assert [j.name for j in jobs] == ["people_to_crm"] and idle == ["by_hand"]
    assert jobs[0].describe() == "every 1m"


def test_a_run_is_a_sync_run_and_the_metrics_are_its_report(ctx):
    c = ctx()
    job = ScheduledSyncJob(c.project.syncs["people_to_crm"], c)
    c.metrics.run_started(job.name)
    out = job.run(threading.Event())
    c.metrics.run_finished(job.name, out.status, out.seconds, out.rows, out.withheld)
    assert out.status == "rejected"
    assert out.rows == {"read": 5, "sent": 2, "unchanged": 0, "rejected": 1, "pending": 0}
    assert sum(out.withheld.values()) == 2 and len(out.withheld) >= 1
    m = samples(c.metrics)
    label = (("sync", "people_to_crm"),)
    assert m[("conn_sync_rows_read_total", label)] == 5
    acked = {r["email"] for _, _, rows in fakes.RECEIVED for r in rows} - {"bad@example.com"}
    assert m[("conn_sync_rows_sent_total", label)] == 2 == len(acked)
    assert m[("conn_sync_rows_rejected_total", label)] == 1
    withheld = {dict(k[1])["reason"]: v for k, v in m.items()
                if k[0] == "conn_sync_rows_withheld_total"}
    assert withheld == {r: n for r, n in out.withheld.items() if n}
    assert withheld == {"denied": 1, "no_record": 1}
    assert m[("conn_sync_runs_total", (("status", "rejected"), *label))] == 1
    assert m[("conn_sync_last_success_timestamp_seconds", label)] > 0
    # The next run sends nothing new; the rejected row is planned again.
    again = job.run(threading.Event())
    assert (again.rows["sent"], again.rows["unchanged"], again.rows["rejected"]) == (0, 2, 1)


def test_a_run_refused_for_its_configuration(ctx):
    c = ctx("no_such_column")
    job = ScheduledSyncJob(c.project.syncs["people_to_crm"], c)
    out = job.run(threading.Event())
    assert out.status == "refused" and "no_such_column" in (out.error or "")


def finished(**extra):
    return {"sync": "s", "status": "failed", "seconds": 1.5,
            "rows": {"read": 3, "sent": 1}, "withheld": 0,
            "error": "token hunter2-x-secret refused", **extra}


def test_events_in_the_three_forms_are_redacted():
    secrets.register("hunter2-x-secret")
    for mode in ("json", "plain", "rich"):
        out = io.StringIO()
        events = Events(mode, out)
        events("serving", url="http://127.0.0.1:1234", port=1234, pid=7, project="p")
        events("scheduled", sync="s", schedule="every 1s", next_run="2026-01-01T00:00:00Z")
        events("unscheduled", syncs=["a", "b"], note="not run by serve (no schedule)")
        events("run_finished", **finished())
        events("run_skipped", sync="s", reason="the previous run is still going")
        text = out.getvalue()
        assert "hunter2" not in text and "***" in text, mode
        lines = text.splitlines()
        if mode == "json":
            got = [json.loads(x) for x in lines]
            assert [e["event"] for e in got] == ["serving", "scheduled", "unscheduled",
                                                 "run_finished", "run_skipped"]
            assert got[0]["port"] == 1234 and got[3]["rows"]["read"] == 3
        elif mode == "plain":
            assert lines[0].endswith(" serving url=http://127.0.0.1:1234 port=1234 pid=7 "
                                     "project=p")
            assert ' scheduled sync=s schedule="every 1s" ' in lines[1]
            assert " unscheduled syncs=a,b " in lines[2]
            assert " run_finished sync=s status=failed " in lines[3]
        else:
            assert "[" not in text.replace("[]", "")  # no markup left over
            assert "failed s read 3 sent 1" in text and "skip s" in text
