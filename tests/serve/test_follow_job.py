"""docs/realtime.md: a sync with ``follow: true`` is a continuous job of ``conn serve``:
it follows the source's changes until stopped, and its micro-batches reach the metrics
(rows sent, delivery latency). ``follow`` and ``schedule`` together are refused."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from conn.config import load_project
from conn.errors import ConfigError
from conn.serve.jobs import FollowJob, JobContext, jobs_for
from conn.serve.metrics import Metrics
from conn.testing.sync import MEMORY, SyncHarness
from prometheus_client.parser import text_string_to_metric_families

from tests import fakes

SCHEMA = pa.schema([("id", pa.string()), ("email", pa.string())])


def _project(h: SyncHarness, folder: Path, **extra: object):
    spec = {"source": MEMORY, "stream": "people", "destination": "crm",
            "object": "contacts", "match_key": "email", "primary_key": "id",
            "max_latency_ms": 5, "follow": True, **extra}
    (folder / "conn.yml").write_text(yaml.safe_dump(h.project({"people_to_crm": spec})))
    return load_project(folder / "conn.yml", registry=h.registry)


def test_a_followed_sync_is_a_continuous_job_reporting_its_micro_batches(tmp_path: Path):
    fakes.reset()
    with SyncHarness(tmp_path) as h:
        h.destination("crm", fakes.RecordingDestination, {})
        h.stream("people", pa.Table.from_pylist([], schema=SCHEMA), primary_key="id")
        ctx = JobContext(_project(h, tmp_path), h.registry, Metrics())
        jobs, idle = jobs_for(ctx.project, ctx)
        assert [type(j) for j in jobs] == [FollowJob] and idle == []
        job = jobs[0]
        assert job.continuous and job.describe() == "continuously (follow)"
        stop = threading.Event()
        out: list = []
        worker = threading.Thread(target=lambda: out.append(job.run(stop)))
        worker.start()
        h.changes("people", [{"id": str(i), "email": f"u{i}@example.com"} for i in range(6)],
                  ["insert"] * 6)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(
                len(r) for _, _, r in fakes.RECEIVED) < 6:
            time.sleep(0.05)
        stop.set()
        worker.join(30)
    assert not worker.is_alive()
    assert out and out[0].status == "ok", out
    assert sorted(r["email"] for _, _, recs in fakes.RECEIVED for r in recs) == sorted(
        f"u{i}@example.com" for i in range(6))
    sent = {s.name: s.value for fam in text_string_to_metric_families(
        ctx.metrics.exposition().decode()) for s in fam.samples
        if s.labels.get("sync") == "people_to_crm"}
    assert sent["conn_sync_rows_sent_total"] == 6


def test_follow_and_schedule_together_are_refused(tmp_path: Path):
    with SyncHarness(tmp_path) as h:
        h.destination("crm", fakes.RecordingDestination, {})
        h.stream("people", pa.Table.from_pylist([], schema=SCHEMA), primary_key="id")
        with pytest.raises(ConfigError) as err:
            _project(h, tmp_path, schedule={"every": "1m"})
    assert "syncs.people_to_crm.schedule" in str(err.value)
    assert "follow" in str(err.value)
