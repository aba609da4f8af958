"""Singer both ways carries values exactly and plans per loader, checked with the real CLI
and real connectors from PyPI (meltanolabs/pipelinewise targets for PostgreSQL,
pipelinewise-tap-mysql, target-jsonl) in cached virtual environments."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conn.testing.singer import connector_venv

from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
CONN = [sys.executable, "-m", "conn.cli.main"]
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": "trust-auth",
      "database": "test"}
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def conn(*args: str, cwd: Path, stdin: bytes | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CONN, *args], cwd=cwd, input=stdin, capture_output=True,
                          timeout=300, env={**os.environ, **(env or {})})


def ok(p: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
    assert p.returncode == 0, p.stderr.decode()
    return p


def messages(out: bytes) -> list[dict[str, Any]]:
    return [json.loads(x) for x in out.splitlines() if x.strip()]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def venv_bin(name: str, exe: str) -> Path:
    return connector_venv(name, name, root=ROOT) / "bin" / exe


# --- conn singer tap ------------------------------------------------------------------


def prices_db(path: Path, n: int = 3000) -> list[str]:
    """A DuckDB table prices(id, price numeric(12,2)) of random cents; the prices' text."""
    rng = random.Random(7)
    values = [f"{rng.randint(0, 10**8) / 100:.2f}" for _ in range(n)]
    c = duckdb.connect(str(path / "w.duckdb"))
    c.execute("create table prices(id integer primary key, price decimal(12,2))")
    c.executemany("insert into prices values (?, ?)",
                  [(i, Decimal(v)) for i, v in enumerate(values)])
    c.close()
    (path / "tap.json").write_text(json.dumps({"path": str(path / "w.duckdb")}))
    return values


@pytest.mark.slow
def test_tap_writes_decimals_as_their_exact_digits(tmp_path: Path) -> None:
    values = prices_db(tmp_path, 500)
    out = ok(conn("singer", "tap", "--type", "duckdb", "--config", "tap.json",
                  cwd=tmp_path)).stdout
    lines = [x for x in out.splitlines() if b'"RECORD"' in x]
    # The exact text on the wire (a float would print 6.8500000000000005), and the same
    # value for a reader that parses numbers as decimals (as singer-sdk targets do).
    got = [json.loads(x, parse_float=Decimal)["record"]["price"] for x in lines]
    assert [str(v) for v in got] == values
    assert all(f'"price":{v}}}'.encode() in line for v, line in zip(values, lines,
                                                                        strict=True))


def _pg_ready() -> None:
    try:
        import adbc_driver_postgresql.dbapi as dbapi

        dbapi.connect("postgresql://postgres@127.0.0.1:5432/test").close()
    except Exception as exc:  # any failure means: no server here
        unavailable(f"PostgreSQL at 127.0.0.1:5432: {exc}")


@pytest.mark.slow
@pytest.mark.services
@pytest.mark.parametrize("target", ["meltanolabs-target-postgres",
                                    "pipelinewise-target-postgres"])
def test_tap_decimals_land_exactly_in_target_postgres(tmp_path: Path, target: str) -> None:
    """numeric(12,2) 6.85 landed as 6.8500000000000005 (422 of 3,000 values)."""
    _pg_ready()
    import adbc_driver_postgresql.dbapi as dbapi

    values = prices_db(tmp_path)
    schema = f"values_{uuid.uuid4().hex[:8]}"
    key = "default_target_schema"
    cfg = {**PG, key: schema} if target.startswith("meltanolabs") else \
        {**{k: v for k, v in PG.items() if k != "database"}, "dbname": "test", key: schema}
    (tmp_path / "target.json").write_text(json.dumps(cfg))
    tap = ok(conn("singer", "tap", "--type", "duckdb", "--config", "tap.json",
                  cwd=tmp_path)).stdout
    exe = venv_bin(target, "target-postgres")
    p = subprocess.run([str(exe), "--config", str(tmp_path / "target.json")], input=tap,
                       capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    try:
        with dbapi.connect("postgresql://postgres@127.0.0.1:5432/test") as c, \
                c.cursor() as cur:
            # Both targets' own types (numeric, double precision) print the value
            # they hold: the tap's digits must come back unchanged.
            cur.execute(f"select id, price::text from {schema}.prices order by id")
            got = [row[1] for row in cur.fetchall()]
        assert len(got) == len(values)
        assert [Decimal(g) for g in got] == [Decimal(v) for v in values]
    finally:
        with dbapi.connect("postgresql://postgres@127.0.0.1:5432/test",
                           autocommit=True) as c, c.cursor() as cur:
            cur.execute(f"drop schema if exists {schema} cascade")


@pytest.mark.slow
def test_tap_stops_on_values_json_cannot_carry(tmp_path: Path) -> None:
    c = duckdb.connect(str(tmp_path / "w.duckdb"))
    c.execute("create table m(id integer primary key, score double)")
    c.execute("insert into m values (1, 1.5), (2, 'nan'::double)")
    c.close()
    (tmp_path / "tap.json").write_text(json.dumps({"path": str(tmp_path / "w.duckdb")}))
    p = conn("singer", "tap", "--type", "duckdb", "--config", "tap.json", cwd=tmp_path)
    assert p.returncode == 1
    assert b"stream 'm', record id=2: score: NaN is not a number JSON can carry" in p.stderr
    # Never a null in its place.
    recs = [m for m in messages(p.stdout) if m["type"] == "RECORD"]
    assert all(r["record"]["score"] is not None for r in recs)


@pytest.mark.slow
def test_tap_catalog_and_schema_never_make_keys_nullable(tmp_path: Path) -> None:
    prices_db(tmp_path, 3)
    cat = json.loads(ok(conn("singer", "tap", "--type", "duckdb", "--config", "tap.json",
                             "--discover", cwd=tmp_path)).stdout)
    (entry,) = cat["streams"]
    assert entry["schema"]["properties"]["id"] == {"type": "integer"}
    assert entry["schema"]["required"] == ["id"]
    assert "null" in entry["schema"]["properties"]["price"]["type"]
    schema = messages(ok(conn("singer", "tap", "--type", "duckdb", "--config", "tap.json",
                              cwd=tmp_path)).stdout)[0]
    assert schema["schema"]["properties"]["id"] == {"type": "integer"}


# --- conn singer target -----------------------------------------------------------------


def singer_input(order: list[str], rows: int = 5, stream: str = "items",
                 keys: list[str] | None = None) -> bytes:
    """A tap's output with its properties (and record keys) in ``order``."""
    types = {"id": {"type": "integer"}, "email": {"type": ["string", "null"]},
             "score": {"type": ["number", "null"]}, "tier": {"type": ["string", "null"]}}
    msgs: list[dict[str, Any]] = [{
        "type": "SCHEMA", "stream": stream, "key_properties": ["id"] if keys is None else keys,
        "schema": {"type": "object", "properties": {k: types[k] for k in order}}}]
    for i in range(rows):
        rec = {"id": i, "email": f"u{i}@x.org", "score": i * 1.5, "tier": "ab"[i % 2]}
        msgs.append({"type": "RECORD", "stream": stream,
                     "record": {k: rec[k] for k in order}})
    msgs.append({"type": "STATE", "value": {"n": rows}})
    return b"".join(json.dumps(m).encode() + b"\n" for m in msgs)


def summary(p: subprocess.CompletedProcess[bytes]) -> str:
    return p.stderr.decode()


@pytest.mark.slow
def test_target_sends_nothing_when_only_the_property_order_changed(tmp_path: Path) -> None:
    (tmp_path / "files.json").write_text(json.dumps({"path": "out"}))
    args = ("singer", "target", "--type", "files", "--config", "files.json", "--object",
            "records")
    first = ok(conn(*args, cwd=tmp_path, stdin=singer_input(["id", "email", "score", "tier"])))
    assert "inserted 5" in summary(first)
    again = ok(conn(*args, cwd=tmp_path, stdin=singer_input(["tier", "score", "id", "email"])))
    assert "inserted 0, updated 0, unchanged 5" in summary(again), summary(again)
    assert len(read_jsonl(tmp_path / "out" / "records.jsonl")) == 5


def _mysql_ready() -> Any:
    try:
        import pymysql

        return pymysql.connect(**MYSQL, database="test", autocommit=True)
    except Exception as exc:  # any failure means: no server here
        unavailable(f"MariaDB at 127.0.0.1:3306: {exc}")


@pytest.mark.slow
@pytest.mark.services
def test_pipelinewise_tap_mysql_twice_into_conn_target_sends_once(tmp_path: Path) -> None:
    """pipelinewise-tap-mysql lists SCHEMA properties in a new order every run (a set)."""
    db = _mysql_ready()
    table = f"values_{uuid.uuid4().hex[:8]}"
    with db.cursor() as cur:
        cur.execute(f"create table {table} (id int primary key, email varchar(64), "
                    f"price decimal(12,2), a int, b int, c int, d int, e int)")
        cur.executemany(f"insert into {table} values (%s, %s, %s, 1, 2, 3, 4, 5)",
                        [(i, f"u{i}@x.org", f"{i}.85") for i in range(1, 31)])
    try:
        tap = venv_bin("pipelinewise-tap-mysql", "tap-mysql")
        (tmp_path / "mysql.json").write_text(json.dumps({**MYSQL, "filter_dbs": "test"}))
        (tmp_path / "files.json").write_text(json.dumps({"path": "out"}))
        from conn.singer import catalog

        cat = json.loads(subprocess.run(
            [str(tap), "--config", "mysql.json", "--discover"], cwd=tmp_path,
            capture_output=True, check=True, timeout=300).stdout)
        cat = catalog.apply_metadata(
            {"streams": [s for s in cat["streams"] if s["table_name"] == table]},
            {"*": {"selected": True, "replication-method": "FULL_TABLE"}})
        (tmp_path / "catalog.json").write_text(json.dumps(cat))
        orders, reports = set(), []
        for _ in range(3):
            out = subprocess.run([str(tap), "--config", "mysql.json", "--catalog",
                                  "catalog.json"], cwd=tmp_path, capture_output=True,
                                 check=True, timeout=300).stdout
            orders.add(tuple(next(m for m in messages(out) if m["type"] == "SCHEMA")
                             ["schema"]["properties"]))
            reports.append(summary(ok(conn("singer", "target", "--type", "files",
                                           "--config", "files.json", "--object",
                                           "records", cwd=tmp_path, stdin=out))))
        assert len(orders) > 1, "the tap kept one property order: nothing was tested"
        assert "inserted 30" in reports[0]
        assert all("inserted 0, updated 0, unchanged 30" in r for r in reports[1:]), reports
        got = read_jsonl(tmp_path / "out" / "records.jsonl")
        assert len(got) == 30 and {r["price"] for r in got} >= {1.85, 30.85}
    finally:
        with db.cursor() as cur:
            cur.execute(f"drop table if exists {table}")
        db.close()


@pytest.mark.slow
def test_target_keeps_planning_state_per_loader(tmp_path: Path) -> None:
    """Two loaders of one type in one Meltano project shared singer-files-<stream>: the
    second got nothing. Each loader now plans on its own; earlier state is continued."""
    data = singer_input(["id", "email", "score", "tier"])
    for name in ("a", "b"):
        (tmp_path / f"{name}.json").write_text(json.dumps({"path": f"out_{name}"}))

    def load(cfg: str, **env: str) -> str:
        return summary(ok(conn("singer", "target", "--type", "files", "--config", cfg,
                               "--object", "records", cwd=tmp_path, stdin=data, env=env)))

    # State written by an earlier version: under the type alone (what --name files gives).
    first = summary(ok(conn("singer", "target", "--type", "files", "--config", "a.json",
                            "--object", "records", "--name", "files", cwd=tmp_path,
                            stdin=data)))
    assert "singer-files-items: ok" in first and "inserted 5" in first
    # Meltano's loader names: the first to run continues that state (sends nothing);
    # the other loader keeps its own and gets every row.
    a = load("a.json", MELTANO_LOADER_NAME="target-conn-a")
    assert "inserted 0, updated 0, unchanged 5" in a, a
    b = load("b.json", MELTANO_LOADER_NAME="target-conn-b")
    assert "singer-target-conn-b-items: ok" in b and "inserted 5" in b, b
    assert len(read_jsonl(tmp_path / "out_b" / "records.jsonl")) == 5
    assert "unchanged 5" in load("b.json", MELTANO_LOADER_NAME="target-conn-b")
    assert "unchanged 5" in load("a.json", MELTANO_LOADER_NAME="target-conn-a")
    claims = json.loads((tmp_path / ".conn" / "singer-loaders.json").read_text())
    assert claims == {"files": "target-conn-a"}
    # Without Meltano: the type and a digest of the config tell loaders apart.
    (tmp_path / "c.json").write_text(json.dumps({"path": "out_c"}))
    c = load("c.json", MELTANO_LOADER_NAME="")
    assert "inserted 5" in c and "singer-files-" in c and "singer-files-items" not in c


@pytest.mark.slow
def test_target_without_key_properties_names_the_primary_key_option(tmp_path: Path) -> None:
    (tmp_path / "files.json").write_text(json.dumps({"path": "out"}))
    data = singer_input(["id", "email"], keys=[])
    args = ("singer", "target", "--type", "files", "--config", "files.json", "--object",
            "records")
    p = conn(*args, cwd=tmp_path, stdin=data)
    err = summary(p)
    assert p.returncode == 3, err
    assert "--primary-key" in err and "conn.yml" not in err and "key_properties" in err
    assert "inserted 5" in summary(ok(conn(*args, "--primary-key", "id", cwd=tmp_path,
                                           stdin=data)))


TARGET_ONLY = """
destinations:
  landing:
    type: files
    purposes: [analytics]
    config:
      path: out
      objects:
        items: {identifiers: [email]}
syncs:
  items_in:
    stream: items
    destination: landing
    object: items
    match_key: email
    mapping: {email: email, score: score}
    consent:
      legal_basis: {analytics: legitimate_interests}
"""


@pytest.mark.slow
def test_target_only_project_needs_no_source(tmp_path: Path) -> None:
    (tmp_path / "conn.yml").write_text(TARGET_ONLY)
    ok(conn("check", cwd=tmp_path))
    p = ok(conn("singer", "target", "landing", "--sync", "items_in", cwd=tmp_path,
                stdin=singer_input(["id", "email", "score", "tier"])))
    assert "inserted 5" in summary(p)
    assert all(set(r) == {"email", "score", "_op"}
               for r in read_jsonl(tmp_path / "out" / "items.jsonl"))
    # Such a sync has no source for 'conn sync' or a preview: said plainly.
    p = conn("preview", "items_in", cwd=tmp_path)
    assert p.returncode != 0 and b"conn singer target --sync items_in" in p.stdout + p.stderr
    data = singer_input(["id", "email"], keys=[])
    p = conn("singer", "target", "landing", "--sync", "items_in", cwd=tmp_path, stdin=data)
    assert p.returncode == 3 and b"--primary-key" in p.stderr


# --- the singer destination --------------------------------------------------------------


@pytest.mark.slow
def test_singer_destination_without_fields_sends_every_mapped_field(tmp_path: Path) -> None:
    """Set up as its README shows (identifiers, no fields) it sent only the key."""
    target = venv_bin("target-jsonl", "target-jsonl")
    c = duckdb.connect(str(tmp_path / "w.duckdb"))
    c.execute("create table contacts(id integer primary key, email varchar, "
              "ltv decimal(12,2), tier varchar)")
    c.execute("insert into contacts values (1, 'a@x.org', 6.85, 'gold'), "
              "(2, 'b@x.org', 0.10, null)")
    c.close()
    (tmp_path / "jl").mkdir()
    (tmp_path / "conn.yml").write_text(f"""
sources:
  wh: {{type: duckdb, config: {{path: w.duckdb}}}}
destinations:
  sheet:
    type: singer
    config:
      command: {target}
      config: {{destination_path: {tmp_path / "jl"}, do_timestamp_file: false}}
      objects:
        - name: contacts
          identifiers: [email]
syncs:
  contacts_out: {{source: wh, stream: contacts, destination: sheet, object: contacts}}
""")
    ok(conn("sync", "wh", "sheet", cwd=tmp_path))
    got = read_jsonl(tmp_path / "jl" / "contacts.jsonl")
    assert got == [{"id": 1, "email": "a@x.org", "ltv": 6.85, "tier": "gold"},
                   {"id": 2, "email": "b@x.org", "ltv": 0.1, "tier": None}]
