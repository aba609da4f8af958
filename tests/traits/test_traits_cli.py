"""Traits through the real ``conn`` CLI against a plain Python model (docs/traits.md).

Random events per customer go into a DuckDB file; a sync maps every kind of trait
(count, sum, avg, min, max, first, last, distinct, recency, over 7 days, 30 days and all
time, with ``where`` filters), a ratio and an SQL expression over traits to the files
destination; each value is compared with the model computed from the same events.
Event times are whole days plus a fraction in [0.1, 0.9] of a day before the run, so no
event sits on a window's edge while the CLI starts.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("conn_source_duckdb")
pytest.importorskip("conn_destination_files")

TYPES = ("order", "login", "feature_failed")
TRAITS = """
traits:
  orders_7d: {@E count, time: ts, window: 7d, where: "type = 'order'"}
  ltv: {@E sum, column: amount, where: "type = 'order'"}
  avg_30d: {@E avg, column: amount, time: ts, window: 30d}
  smallest: {@E min, column: amount}
  largest: {@E max, column: amount, time: ts, window: 7d}
  first_type: {@E first, column: type, time: ts}
  last_type: {@E last, column: type, time: ts, window: 30d}
  kinds_30d: {@E distinct, column: type, time: ts, window: 30d}
  days_since_login: {@E recency, time: ts, where: "type = 'login'"}
  failures_7d: {@E count, time: ts, window: 7d, where: "type = 'feature_failed'"}
  per_order: {ratio: [ltv, orders_7d]}
  health: {sql: "100 - 10 * failures_7d - coalesce(days_since_login, 30)"}
  health_band: {sql: "CASE WHEN health < 40 THEN 'low' ELSE 'ok' END"}
""".replace("@E", "source: wh, stream: events, key: customer_id, aggregate:")
NAMES = ("orders_7d", "ltv", "avg_30d", "smallest", "largest", "first_type", "last_type",
         "kinds_30d", "days_since_login", "failures_7d", "per_order", "health", "health_band")


def model(customers: list[int], events: list[tuple[int, str, int, float]]) -> dict[int, dict]:
    """Each trait by its definition; ``events``: (customer, type, amount, age in days)."""
    out = {}
    for c in customers:
        evs = [e for e in events if e[0] == c]
        d7 = [e for e in evs if e[3] < 7]
        d30 = [e for e in evs if e[3] < 30]
        orders = [e for e in evs if e[1] == "order"]
        logins = [e[3] for e in evs if e[1] == "login"]
        r: dict[str, Any] = {
            "orders_7d": len([e for e in d7 if e[1] == "order"]),
            "ltv": sum(e[2] for e in orders) if orders else None,
            "avg_30d": sum(e[2] for e in d30) / len(d30) if d30 else None,
            "smallest": min(e[2] for e in evs) if evs else None,
            "largest": max(e[2] for e in d7) if d7 else None,
            "first_type": max(evs, key=lambda e: e[3])[1] if evs else None,
            "last_type": min(d30, key=lambda e: e[3])[1] if d30 else None,
            "kinds_30d": len({e[1] for e in d30}),
            "days_since_login": math.floor(min(logins)) if logins else None,
            "failures_7d": len([e for e in d7 if e[1] == "feature_failed"]),
        }
        r["per_order"] = (None if r["ltv"] is None or not r["orders_7d"]
                          else r["ltv"] / r["orders_7d"])
        r["health"] = 100 - 10 * r["failures_7d"] - (
            30 if r["days_since_login"] is None else r["days_since_login"])
        r["health_band"] = "low" if r["health"] < 40 else "ok"
        out[c] = r
    return out


@st.composite
def scenarios(draw: Any) -> dict[str, Any]:
    customers = list(range(1, draw(st.integers(1, 8)) + 1))
    n = draw(st.integers(0, 40))
    # Distinct ages: first and last are never a tie.
    days = draw(st.lists(st.integers(0, 60), min_size=n, max_size=n))
    fracs = draw(st.lists(st.integers(100, 900), min_size=n, max_size=n, unique=True))
    events = [(draw(st.sampled_from([*customers, 99])), draw(st.sampled_from(TYPES)),
               draw(st.integers(-50, 500)), d + f / 1000) for d, f in zip(days, fracs,
                                                                         strict=True)]
    return {"customers": customers, "events": events}


def _project(folder: Path, sc: dict[str, Any], now: datetime) -> None:
    folder.mkdir(parents=True)
    con = duckdb.connect(str(folder / "wh.duckdb"))
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, email VARCHAR)")
    con.executemany("INSERT INTO customers VALUES (?, ?)",
                    [(c, f"c{c}@example.com") for c in sc["customers"]])
    con.execute("CREATE TABLE events (customer_id INTEGER, type VARCHAR, amount INTEGER, "
                "ts TIMESTAMP)")
    if sc["events"]:
        con.executemany("INSERT INTO events VALUES (?, ?, ?, ?)",
                        [(c, t, a, (now - timedelta(days=age)).replace(tzinfo=None))
                         for c, t, a, age in sc["events"]])
    con.close()
    mapping = ", ".join(f"{n}: {n}" for n in NAMES)
    (folder / "conn.yml").write_text(f"""
sources:
  wh: {{type: duckdb, config: {{path: wh.duckdb}}}}
destinations:
  out: {{type: files, purposes: [service], config: {{path: out, format: jsonl, fsync: false}}}}
{TRAITS}
syncs:
  people:
    source: wh
    stream: customers
    destination: out
    object: records
    consent: {{legal_basis: {{service: contract}}}}
    mapping: {{id: id, email: email, {mapping}}}
""")


_n = iter(range(10**6))


@pytest.mark.slow
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenarios())
def test_traits_match_the_model(tmp_path: Path, sc: dict[str, Any]) -> None:
    folder = tmp_path / f"p{next(_n)}"
    now = datetime.now(UTC)
    _project(folder, sc, now)
    p = subprocess.run([sys.executable, "-m", "conn.cli.main", "sync", "wh", "out", "--json"],
                       cwd=folder, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert time.time() - now.timestamp() < 3600  # the run's clock is the model's
    rows = {}
    for f in (folder / "out").rglob("*.jsonl"):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            rows[r["id"]] = r
    expected = model(sc["customers"], sc["events"])
    assert set(rows) == set(expected)
    for c, want in expected.items():
        for name, value in want.items():
            got = rows[c][name]
            if isinstance(value, float) or isinstance(got, float):
                assert got is not None and value is not None, (c, name, got, value)
                assert math.isclose(float(got), value, rel_tol=1e-9), (c, name, got, value)
            else:
                assert got == value, (c, name, got, value)
