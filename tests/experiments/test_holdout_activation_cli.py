"""Holdouts of an audience and of a trigger through the real CLI (docs/experiments.md,
"Audiences and triggers"): every sync sending the audience withholds the same held-out
members; a trigger's held-out keys' firings are recorded (they do not fire again) and
never delivered; both arms are recorded only among consented keys, the held-out share
lies in its binomial band, and runs on the same data change nothing.
``conn experiments list`` and ``report`` work for both."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.experiments.reference import is_held_out

pytest.importorskip("conn_source_duckdb")
pytest.importorskip("conn_destination_files")
pytest.importorskip("conn_destination_webhook")

N = 3000
PROJECT = """\
version: 1
sources:
  warehouse: {{type: duckdb, config: {{path: warehouse.duckdb}}}}
destinations:
  crm: {{type: files, purposes: [marketing], config: {{path: out_crm, materialize: true}}}}
  ads: {{type: files, purposes: [marketing], config: {{path: out_ads, materialize: true}}}}
  hook: {{type: webhook, purposes: [marketing], config: {{url: "{url}"}}}}
audiences:
  at_risk: {{where: "health < 50", holdout: {{percent: 20, salt: a1}}}}
triggers:
  dropped: {{watch: health, below: 40, rearm: 50, holdout: {{percent: 30, salt: t1}}}}
syncs:
  risk_to_crm: &aud
    source: warehouse
    stream: customers
    destination: crm
    object: records
    primary_key: id
    match_key: id
    mode: mirror
    audience: at_risk
    consent: {{columns: {{marketing: mkt}}}}
    mapping: {{id: id, email: email}}
  risk_to_ads: {{<<: *aud, destination: ads}}
  alerts:
    source: warehouse
    stream: customers
    destination: hook
    object: events
    primary_key: id
    match_key: id
    mode: events
    trigger: dropped
    event: {{name: dropped, time_from: trigger_at}}
    consent: {{columns: {{marketing: mkt}}}}
    mapping: {{id: id, email: email}}
"""


def person_ids(receiver: Any) -> list[int]:
    """The person id of each event the webhook received."""
    return [int(r["person"]["id"]) for req in receiver.requests for r in req.json["records"]]


def conn(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conn.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def load(path: Path, health: str) -> None:
    """Customers: every third without consent; ``health`` an SQL expression of ``i``."""
    con = duckdb.connect(str(path / "warehouse.duckdb"))
    con.execute("CREATE OR REPLACE TABLE customers AS SELECT i AS id, 'u' || i || "
                "'@example.com' AS email, CASE WHEN i % 3 = 0 THEN 'no' ELSE 'yes' END AS "
                f"mkt, ({health})::DOUBLE AS health FROM range({N}) t(i)")
    con.execute("CREATE OR REPLACE TABLE orders AS SELECT i AS id FROM range(0, "
                f"{N}, 7) t(i)")
    con.close()


def sent(path: Path) -> set[int]:
    f = path / "_current" / "records.jsonl"
    return {json.loads(line)["id"] for line in f.read_text().splitlines()} if f.exists() \
        else set()


def sync(cwd: Path, dest: str) -> dict[str, Any]:
    done = conn(cwd, "sync", "warehouse", dest, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def experiments(cwd: Path) -> dict[str, tuple[int, int]]:
    out = conn(cwd, "experiments", "list", "--json")
    assert out.returncode == 0, out.stderr
    return {e["name"]: (e["treatment"], e["holdout"])
            for e in json.loads(out.stdout)["experiments"]}


def in_band(held: int, n: int, percent: float) -> bool:
    """Within 5 standard deviations of the binomial mean (probability ~ 1 - 6e-7)."""
    p = percent / 100
    return abs(held - n * p) <= 5 * math.sqrt(n * p * (1 - p))


@pytest.mark.slow
def test_audience_and_trigger_holdouts(tmp_path: Path, fault_server: Any) -> None:
    hook = fault_server
    (tmp_path / "conn.yml").write_text(PROJECT.format(url=hook.url + "/hook"))
    even = [i for i in range(N) if i % 2 == 0]
    consented = [i for i in even if i % 3 != 0]
    load(tmp_path, "CASE WHEN i % 2 = 0 THEN 45 ELSE 60 END")  # evens: in the audience
    for dest in ("crm", "ads", "hook"):
        sync(tmp_path, dest)
    aud_t = {i for i in consented if not is_held_out(str(i), 20, "a1")}
    assert sent(tmp_path / "out_crm") == aud_t == sent(tmp_path / "out_ads")
    assert person_ids(hook) == []  # first sight of every key: no firing
    aud = (len(aud_t), len(consented) - len(aud_t))
    assert experiments(tmp_path) == {"at_risk": aud, "dropped": (0, 0)}  # begun
    assert in_band(aud[1], len(consented), 20)

    load(tmp_path, "CASE WHEN i % 2 = 0 THEN 30 ELSE 60 END")  # evens cross below 40
    rep = sync(tmp_path, "hook")["syncs"][0]
    trig_t = [i for i in consented if not is_held_out(str(i), 30, "t1")]
    assert sorted(person_ids(hook)) == trig_t
    trig = (len(trig_t), len(consented) - len(trig_t))
    assert (rep["experiment"]["trigger"], rep["experiment"]["held_out"]) == \
        ("dropped", trig[1])
    assert in_band(trig[1], len(consented), 30)

    # The same data again: nothing fires again (held-out firings were recorded), no
    # new member, nothing changes in the audience's destinations.
    hook.reset()
    for dest in ("crm", "ads", "hook"):
        again = sync(tmp_path, dest)["syncs"][0]
        assert again["experiment"]["new_members"] == 0, dest
    assert again["experiment"]["eligible"] == 0  # the trigger: nothing fired again
    assert person_ids(hook) == []
    assert sent(tmp_path / "out_crm") == aud_t == sent(tmp_path / "out_ads")
    assert experiments(tmp_path) == {"at_risk": aud, "dropped": trig}

    for name, arms in (("at_risk", aud), ("dropped", trig)):
        out = conn(tmp_path, "experiments", "report", name, "--outcome", "orders",
                   "--json")
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)
        assert (got["treatment"]["members"], got["holdout"]["members"]) == arms
