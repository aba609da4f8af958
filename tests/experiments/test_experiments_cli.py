"""Holdout experiments through the real CLI (docs/experiments.md): a sync with a holdout
sends only the treatment arm of the consented rows, records both arms, refuses a changed
design unless --new-experiment, and ``conn experiments report`` agrees with a reference
computed here from the data and the documented hash and statistics."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from tests.experiments.reference import is_held_out, uplift

pytest.importorskip("conn_source_duckdb")
pytest.importorskip("conn_destination_files")

N = 4000
PROJECT = """\
version: 1
sources:
  warehouse: {{type: duckdb, config: {{path: warehouse.duckdb}}}}
destinations:
  crm: {{type: files, purposes: [marketing], config: {{path: out, materialize: true}}}}
syncs:
  people:
    source: warehouse
    stream: customers
    destination: crm
    object: records
    primary_key: id
    match_key: id
    mode: mirror
    consent: {{columns: {{marketing: mkt}}}}
    holdout: {{percent: {percent}, salt: {salt}}}
    mapping: {{id: id, email: email}}
"""


def conn(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conn.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=180)


def consented() -> list[int]:
    return [i for i in range(N) if i % 3 != 0]  # mkt = 'no' for every third customer


@pytest.fixture
def project(tmp_path: Path) -> Path:
    rng = np.random.default_rng(19)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute("CREATE TABLE customers AS SELECT i AS id, 'u' || i || '@example.com' AS "
                "email, CASE WHEN i % 3 = 0 THEN 'no' ELSE 'yes' END AS mkt "
                f"FROM range({N}) t(i)")
    # Planted: a treated customer orders with probability 0.30, a held-out one 0.15;
    # null: everyone 0.2, whatever the arm. Customers without consent order too.
    planted, null = [], []
    for i in range(N):
        held = is_held_out(str(i), 20, "s1")
        if rng.random() < (0.15 if held else 0.30):
            planted += [i, i]  # two orders: a member counts once
        if rng.random() < 0.2:
            null.append(i)
    orders = pa.table({"order_id": pa.array(range(len(planted)), pa.int64()),
                       "customer_id": pa.array(planted, pa.int64())})
    visits = pa.table({"customer_id": pa.array(null, pa.int64())})
    con.register("o", orders)
    con.register("v", visits)
    con.execute("CREATE TABLE orders AS SELECT * FROM o")
    con.execute("CREATE TABLE visits AS SELECT * FROM v")
    con.close()
    (tmp_path / "conn.yml").write_text(PROJECT.format(percent=20, salt="s1"))
    return tmp_path


def sent(path: Path) -> set[int]:
    f = path / "out" / "_current" / "records.jsonl"
    return {json.loads(line)["id"] for line in f.read_text().splitlines()} if f.exists() \
        else set()


def reference_report(con_path: Path, table: str) -> dict[str, float]:
    con = duckdb.connect(str(con_path / "warehouse.duckdb"), read_only=True)
    buyers = {r[0] for r in con.execute(f"SELECT customer_id FROM {table}").fetchall()}
    con.close()
    arms: dict[bool, list[int]] = {True: [], False: []}
    for i in consented():
        arms[is_held_out(str(i), 20, "s1")].append(i)
    n_t, n_h = len(arms[False]), len(arms[True])
    x_t = sum(i in buyers for i in arms[False])
    x_h = sum(i in buyers for i in arms[True])
    return {"n_t": n_t, "x_t": x_t, "n_h": n_h, "x_h": x_h, **uplift(n_t, x_t, n_h, x_h)}


@pytest.mark.slow
def test_a_holdout_sync_sends_the_treatment_arm_and_reports_the_planted_uplift(project):
    done = conn(project, "sync", "warehouse", "crm", "--json")
    assert done.returncode == 0, done.stderr
    rep = json.loads(done.stdout)["syncs"][0]
    treatment = {i for i in consented() if not is_held_out(str(i), 20, "s1")}
    assert sent(project) == treatment
    assert rep["experiment"]["eligible"] == len(consented())
    assert rep["experiment"]["held_out"] == len(consented()) - len(treatment)

    listed = json.loads(conn(project, "experiments", "list", "--json").stdout)
    [e] = listed["experiments"]
    assert (e["name"], e["status"], e["treatment"], e["holdout"]) == \
        ("people", "running", len(treatment), len(consented()) - len(treatment))

    for table, planted in (("orders", True), ("visits", False)):
        out = conn(project, "experiments", "report", "people", "--outcome",
                   f"SELECT customer_id FROM {table}", "--key", "customer_id", "--json")
        assert out.returncode == 0, out.stderr
        got, ref = json.loads(out.stdout), reference_report(project, table)
        assert (got["treatment"]["members"], got["treatment"]["converted"],
                got["holdout"]["members"], got["holdout"]["converted"]) == \
            (ref["n_t"], ref["x_t"], ref["n_h"], ref["x_h"])
        for k, r in (("absolute", "absolute"), ("relative", "relative")):
            assert math.isclose(got[k], ref[r], rel_tol=1e-9)
        assert math.isclose(got["absolute_ci"][0], ref["absolute_low"], rel_tol=1e-6)
        assert math.isclose(got["relative_ci"][1], ref["relative_high"], rel_tol=1e-6)
        assert math.isclose(got["p_value"], ref["p_value"], rel_tol=1e-6, abs_tol=1e-15)
        if planted:  # 30 % vs 15 % over ~2,700 members: found, and near the truth
            assert got["significant"] and got["absolute_ci"][0] <= 0.15 <= \
                got["absolute_ci"][1]
    # Piped: plain lines, no table borders.
    plain = conn(project, "experiments", "report", "people", "-o", "orders", "-k",
                 "customer_id")
    assert plain.returncode == 0, plain.stderr
    assert "absolute uplift\t+" in plain.stdout and "p-value\t" in plain.stdout
    assert "─" not in plain.stdout

    # conn explain: a person's arm, as computed and as recorded.
    held = next(i for i in consented() if is_held_out(str(i), 20, "s1"))
    ex = json.loads(conn(project, "explain", str(held), "--json").stdout)
    [s] = ex["syncs"]
    assert s["would_send"] is False
    assert s["experiment"]["arm"] == "holdout"
    assert s["experiment"]["recorded"]["arm"] == "holdout"


@pytest.mark.slow
def test_a_changed_design_is_refused_then_archived_with_new_experiment(project):
    assert conn(project, "sync", "warehouse", "crm").returncode == 0
    (project / "conn.yml").write_text(PROJECT.format(percent=20, salt="s2"))
    refused = conn(project, "sync", "warehouse", "crm", "--json")
    assert refused.returncode == 3
    assert "conn.yml: syncs.people.holdout:" in refused.stderr
    assert "--new-experiment" in refused.stderr
    err = json.loads(refused.stdout)["error"]
    assert err["path"] == "syncs.people.holdout"
    before = sent(project)

    done = conn(project, "sync", "warehouse", "crm", "--new-experiment", "--json")
    assert done.returncode == 0, done.stderr
    # Mirror mode: who is held out now is deleted, who is treated now is sent.
    assert sent(project) == {i for i in consented() if not is_held_out(str(i), 20, "s2")}
    assert sent(project) != before
    listed = json.loads(conn(project, "experiments", "list", "--json").stdout)["experiments"]
    assert {(e["name"], e["status"], e["salt"]) for e in listed} == \
        {("people#1", "archived", "s1"), ("people", "running", "s2")}


@pytest.mark.slow
def test_report_errors_have_exit_codes_and_help(project):
    assert conn(project, "sync", "warehouse", "crm").returncode == 0
    unknown = conn(project, "experiments", "report", "nope", "--outcome", "orders",
                   "--json")
    assert unknown.returncode == 3
    assert "no experiment 'nope'" in unknown.stderr and "people" in unknown.stderr
    assert json.loads(unknown.stdout)["ok"] is False
    nokey = conn(project, "experiments", "report", "people", "--outcome", "orders")
    assert nokey.returncode == 3 and "--key" in nokey.stderr
    usage = conn(project, "experiments", "report", "people")
    assert usage.returncode == 2
    helped = conn(project, "experiments", "report", "--help")
    assert helped.returncode == 0
    assert "--outcome" in helped.stdout and "Exit codes" in helped.stdout


@pytest.mark.slow
def test_the_demo_report_finds_the_planted_uplift(tmp_path):
    from conn.demo import RENEWAL_RATE

    demo = tmp_path / "demo"
    assert conn(tmp_path, "init", "--demo", str(demo), "--customers", "20000").returncode == 0
    assert conn(demo, "sync", "warehouse", "crm").returncode == 0
    done = conn(demo, "experiments", "report", "customers_to_crm", "--outcome", "renewals",
                "--json")
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    planted = RENEWAL_RATE["treatment"] - RENEWAL_RATE["holdout"]
    assert got["significant"]
    assert got["absolute_ci"][0] <= planted <= got["absolute_ci"][1]


@pytest.mark.slow
def test_conn_forget_removes_a_member_from_the_experiment(project):
    assert conn(project, "sync", "warehouse", "crm").returncode == 0
    held = next(i for i in consented() if is_held_out(str(i), 20, "s1"))
    sent_one = next(i for i in consented() if not is_held_out(str(i), 20, "s1"))
    for subject in (held, sent_one):
        done = conn(project, "forget", str(subject), "--json")
        assert done.returncode == 0, done.stderr
    listed = json.loads(conn(project, "experiments", "list", "--json").stdout)
    [e] = listed["experiments"]
    treated = sum(not is_held_out(str(i), 20, "s1") for i in consented())
    assert (e["treatment"], e["holdout"]) == (treated - 1, len(consented()) - treated - 1)
    ex = json.loads(conn(project, "explain", str(held), "--json").stdout)
    assert "recorded" not in ex["syncs"][0].get("experiment", {})
