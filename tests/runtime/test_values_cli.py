"""Values travel exactly or not at all, through the real ``conn`` CLI: a row holding a value
its destination's format cannot carry (NaN, ±Infinity, a date outside the years
0001-9999) is rejected with a reason while the other rows are delivered; nothing is
rewritten (NaN as null, year 294246 as "32103-01-10T...", bytes as "Ren\\xE9")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conn.testing.http import FaultServer

from tests.conftest import unavailable

CONN = [sys.executable, "-m", "conn.cli.main"]
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def conn(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CONN, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def report(p: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert p.stdout, p.stderr
    return json.loads(p.stdout)["syncs"][0]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


#: id -> why the row cannot travel as JSON (None: it can).
ROWS = {1: None, 2: "score: NaN is not a number JSON can carry",
        3: "score: Infinity is not a number JSON can carry",
        4: "score: -Infinity is not a number JSON can carry",
        5: "born: a date outside the years 0001-9999, which RFC 3339 text cannot carry",
        6: "seen: a timestamp outside the years 0001-9999, which RFC 3339 text cannot carry",
        7: "scores[]: NaN is not a number JSON can carry", 8: None}


@pytest.fixture()
def project(tmp_path: Path, fault_server: FaultServer) -> Path:
    c = duckdb.connect(str(tmp_path / "w.duckdb"))
    c.execute("create table m(id integer primary key, score double, born date, "
              "seen timestamp, scores double[])")
    c.execute("""insert into m values
        (1, 1.5, date '2000-01-01', timestamp '2020-01-01 10:00:00', [1.0]),
        (2, 'nan'::double, date '2000-01-02', null, null),
        (3, 'inf'::double, null, null, null),
        (4, '-inf'::double, null, null, null),
        (5, 2.0, 'infinity'::date, null, null),
        (6, 2.5, null, timestamp '294246-01-01 00:00:00', null),
        (7, 3.0, null, null, [2.0, 'nan'::double]),
        (8, 3.5, date '0001-01-01', timestamp '9999-12-31 23:59:59', [])""")
    c.close()
    (tmp_path / "conn.yml").write_text(f"""
sources:
  wh: {{type: duckdb, config: {{path: w.duckdb}}}}
destinations:
  jl: {{type: files, config: {{path: jl}}}}
  pq: {{type: files, config: {{path: pq, format: parquet}}}}
  hook: {{type: webhook, config: {{url: "{fault_server.url}/hook", check: none}}}}
syncs:
  to_jl: {{source: wh, stream: m, destination: jl, object: records}}
  to_pq: {{source: wh, stream: m, destination: pq, object: records}}
  to_hook: {{source: wh, stream: m, destination: hook, object: records}}
""")
    return tmp_path


@pytest.mark.slow
def test_json_destinations_reject_what_json_cannot_carry(project: Path,
                                                         fault_server: FaultServer) -> None:
    bad = {i: why for i, why in ROWS.items() if why}
    good = sorted(i for i, why in ROWS.items() if why is None)
    want_reasons: dict[str, int] = {}
    for why in bad.values():
        want_reasons[why] = want_reasons.get(why, 0) + 1

    p = conn("sync", "wh", "jl", "--json", cwd=project)
    rep = report(p)
    assert p.returncode == 4, p.stderr  # finished, with rejected rows
    assert (rep["status"], rep["inserted"], rep["rejected"], rep["pending"]) == \
        ("rejected", len(good), len(bad), 0)
    assert rep["rejection_reasons"] == want_reasons
    text = (project / "jl" / "records.jsonl").read_text()
    rows = [json.loads(x) for x in text.splitlines()]  # every line is strict JSON
    assert sorted(r["id"] for r in rows) == good
    assert "NaN" not in text and "Infinity" not in text and "32103" not in text
    by_id = {r["id"]: r for r in rows}
    assert by_id[8]["born"] == "0001-01-01" and by_id[8]["seen"].startswith("9999-12-31")
    listed = json.loads(conn("rejected", "to_jl", "--json", cwd=project).stdout)["rejected"]
    assert {r["key"]: r["reason"] for r in listed} == bad  # listed, keys with their type

    p = conn("sync", "wh", "hook", "--json", cwd=project)
    rep = report(p)
    assert (rep["status"], rep["inserted"], rep["rejected"], rep["pending"]) == \
        ("rejected", len(good), len(bad), 0), p.stderr
    assert rep["rejection_reasons"] == want_reasons
    got = [r for req in fault_server.requests for r in req.json["records"]]
    assert sorted(r["id"] for r in got) == good
    assert all(r["score"] is not None for r in got)  # infinity was never sent as null

    # A format that holds every Arrow value takes every row as it is.
    rep = report(conn("sync", "wh", "pq", "--json", cwd=project))
    assert (rep["status"], rep["inserted"], rep["rejected"]) == ("ok", len(ROWS), 0)
    import pyarrow.dataset as ds

    table = ds.dataset(str(project / "pq" / "records"), format="parquet").to_table()
    scores = dict(zip(table["id"].to_pylist(), table["score"].to_pylist(), strict=True))
    assert scores[2] != scores[2] and scores[3] == float("inf")


def _pg_ready() -> None:
    try:
        import adbc_driver_postgresql.dbapi as dbapi

        dbapi.connect(PG_URL).close()
    except Exception as exc:  # any failure means: no server here
        unavailable(f"PostgreSQL at 127.0.0.1:5432: {exc}")


@pytest.mark.slow
@pytest.mark.services
def test_postgres_infinity_date_is_rejected_and_the_rest_delivered(
        tmp_path: Path, fault_server: FaultServer) -> None:
    """PostgreSQL's 'infinity'::date kept a whole webhook sync pending forever."""
    _pg_ready()
    import uuid

    import adbc_driver_postgresql.dbapi as dbapi

    table = f"values_inf_{uuid.uuid4().hex[:8]}"
    with dbapi.connect(PG_URL, autocommit=True) as c, c.cursor() as cur:
        cur.execute(f"create table {table} (id int primary key, d date, t timestamptz)")
        cur.execute(f"insert into {table} values (1, '2024-01-01', '2024-01-01 10:00Z'), "
                    f"(2, 'infinity', null), (3, null, '-infinity'), (4, '2024-01-04', null)")
    try:
        (tmp_path / "conn.yml").write_text(f"""
sources:
  pg: {{type: postgres, config: {{url: "{PG_URL}", tables: [{table}]}}}}
destinations:
  hook: {{type: webhook, config: {{url: "{fault_server.url}/hook", check: none}}}}
syncs:
  s: {{source: pg, stream: {table}, destination: hook, object: records}}
""")
        for run in range(2):
            p = conn("sync", "pg", "hook", "--json", cwd=tmp_path)
            rep = report(p)
            assert rep["pending"] == 0 and rep["status"] == "rejected", p.stderr
            assert rep["rejected"] == 2
            if run == 0:
                assert rep["inserted"] == 2
            assert sorted(rep["rejection_reasons"]) == [
                "d: a date outside the years 0001-9999, which RFC 3339 text cannot carry",
                "t: a timestamp outside the years 0001-9999, which RFC 3339 text cannot "
                "carry"]
        got = [r for req in fault_server.requests for r in req.json["records"]]
        assert sorted(r["id"] for r in got) == [1, 4]
        assert got[0]["d"] in ("2024-01-01", "2024-01-04")
    finally:
        with dbapi.connect(PG_URL, autocommit=True) as c, c.cursor() as cur:
            cur.execute(f"drop table if exists {table}")


@pytest.mark.slow
def test_csv_bytes_are_decoded_or_refused_never_escaped(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_bytes(b"id,name\n1,Anna\n2,Ren\xe9\n3,Zo\xeb\n")
    yml = """
sources:
  f: {type: files, config: {path: people.csv, primary_key: id%s}}
destinations:
  jl: {type: files, config: {path: jl}}
syncs:
  s: {source: f, stream: people, destination: jl, object: records}
"""
    (tmp_path / "conn.yml").write_text(yml % "")
    p = conn("sync", "f", "jl", cwd=tmp_path)
    assert p.returncode == 3, p.stderr
    assert "people.csv line 3: byte 0xE9 is not valid utf-8" in p.stderr
    assert "config.encoding" in p.stderr
    assert not (tmp_path / "jl" / "records.jsonl").exists()

    (tmp_path / "conn.yml").write_text(yml % ", encoding: latin-1")
    p = conn("sync", "f", "jl", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    names = {r["id"]: r["name"] for r in read_jsonl(tmp_path / "jl" / "records.jsonl")}
    assert names == {1: "Anna", 2: "René", 3: "Zoë"}
