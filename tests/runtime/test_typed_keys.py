"""Keys and match values keep their type end to end: upserts, mirror deletes, state,
rejection lists. Run through the real CLI, as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

pytest.importorskip("conn_source_duckdb")
pytest.importorskip("conn_destination_files")

PROJECT = """\
version: 1
sources:
  warehouse: {{type: duckdb, config: {{path: warehouse.duckdb}}}}
destinations:
  out:
    type: files
    purposes: [marketing]
    config:
      path: out
      materialize: true
      objects:
        customers:
          identifiers: [customer_id]
          fields:
            type: object
            properties:
              customer_id: {{type: integer}}
              email: {{type: string, format: email}}
{extra}
syncs:
  customers_to_out:
    source: warehouse
    stream: customers
    destination: {dest}
    object: customers
    primary_key: customer_id
    match_key: customer_id
    mode: mirror
    consent: {{columns: {{marketing: opt_in}}}}
    mapping:
      customer_id: customer_id
      email: email
"""


def conn(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conn.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def warehouse(path: Path, rows: list[tuple[int, str, bool]]) -> None:
    con = duckdb.connect(str(path / "warehouse.duckdb"))
    con.execute("CREATE OR REPLACE TABLE customers (customer_id BIGINT, email VARCHAR, "
                "opt_in BOOLEAN)")
    con.executemany("INSERT INTO customers VALUES (?, ?, ?)", rows)
    con.close()


@pytest.mark.slow
def test_mirror_delete_of_an_integer_key_deletes(tmp_path):
    """A withdrawn customer with a BIGINT key leaves the files snapshot (the delete
    carries ``2``, as the upsert did, not ``"2"``)."""
    warehouse(tmp_path, [(1, "a@example.com", True), (2, "b@example.com", True)])
    (tmp_path / "conn.yml").write_text(PROJECT.format(extra="", dest="out"))
    first = conn(tmp_path, "sync", "warehouse", "out", "--json")
    assert first.returncode == 0, first.stderr
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute("UPDATE customers SET opt_in = false WHERE customer_id = 2")
    con.close()
    second = conn(tmp_path, "sync", "warehouse", "out", "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["syncs"][0]["deleted"] == 1
    current = [json.loads(line) for line in
               (tmp_path / "out" / "_current" / "customers.jsonl").read_text().splitlines()]
    assert current == [{"customer_id": 1, "email": "a@example.com"}]
    log = [json.loads(line) for line in
           (tmp_path / "out" / "customers.jsonl").read_text().splitlines()]
    assert log[-1] == {"customer_id": 2, "_op": "delete"}


class Receiver:
    """A webhook receiver keyed on the JSON value of the match key."""

    def __init__(self) -> None:
        self.records: dict[object, dict] = {}
        self.deletes: list[object] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                for r in body["records"]:
                    key = r[body["match_key"]] if body["match_key"] else None
                    if body["operation"] == "delete":
                        receiver.deletes.append(key)
                        receiver.records.pop(key, None)
                    elif body["operation"] != "ping":
                        receiver.records[key] = r
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.mark.slow
def test_webhook_receiver_keyed_on_the_json_value_sees_the_delete(tmp_path):
    pytest.importorskip("conn_destination_webhook")
    receiver = Receiver()
    try:
        extra = (f"  hook:\n    type: webhook\n    purposes: [marketing]\n    config:\n"
                 f"      url: {receiver.url}\n      check: none\n"
                 f"      objects: [{{name: customers, identifiers: [customer_id]}}]\n")
        warehouse(tmp_path, [(1, "a@example.com", True), (2, "b@example.com", True)])
        (tmp_path / "conn.yml").write_text(PROJECT.format(extra=extra, dest="hook"))
        assert conn(tmp_path, "sync", "warehouse", "hook").returncode == 0
        assert set(receiver.records) == {1, 2}
        con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
        con.execute("UPDATE customers SET opt_in = false WHERE customer_id = 2")
        con.close()
        assert conn(tmp_path, "sync", "warehouse", "hook").returncode == 0
        assert receiver.deletes == [2]
        assert set(receiver.records) == {1}
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.mark.slow
def test_rejected_rows_are_listed_with_typed_keys_since_and_attempts(tmp_path):
    """A mapper rejection of a new key (invalid e-mail) is listed by ``conn rejected``
    with the key's type, and keeps the time of its first rejection across runs."""
    warehouse(tmp_path, [(1, "a@example.com", True), (2, "not-an-email", True)])
    (tmp_path / "conn.yml").write_text(PROJECT.format(extra="", dest="out"))
    first = conn(tmp_path, "sync", "warehouse", "out", "--json")
    assert first.returncode == 4, first.stderr
    listed = json.loads(conn(tmp_path, "rejected", "customers_to_out", "--json").stdout)
    (row,) = listed["rejected"]
    assert row["key"] == 2 and "email" in row["reason"] and row["attempts"] == 1
    assert conn(tmp_path, "sync", "warehouse", "out").returncode == 4
    (again,) = json.loads(conn(tmp_path, "rejected", "customers_to_out",
                               "--json").stdout)["rejected"]
    assert again["attempts"] == 2 and again["since"] == row["since"]
    plain = conn(tmp_path, "rejected", "customers_to_out")
    assert "since" in plain.stdout and row["since"] in plain.stdout


@pytest.mark.slow
def test_rejected_of_an_unknown_sync_is_a_config_error(tmp_path):
    warehouse(tmp_path, [(1, "a@example.com", True)])
    (tmp_path / "conn.yml").write_text(PROJECT.format(extra="", dest="out"))
    done = conn(tmp_path, "rejected", "nosuch")
    assert done.returncode == 3 and "no sync named 'nosuch'" in done.stderr


@pytest.mark.slow
def test_null_key_rejections_are_listed_and_replaced(tmp_path):
    warehouse(tmp_path, [(1, "a@example.com", True), (None, "n@example.com", True)])
    (tmp_path / "conn.yml").write_text(PROJECT.format(extra="", dest="out"))
    assert conn(tmp_path, "sync", "warehouse", "out").returncode == 4
    (row,) = json.loads(conn(tmp_path, "rejected", "customers_to_out",
                             "--json").stdout)["rejected"]
    assert row["key"] is None and row["reason"].startswith("null primary key (among rows")
    assert conn(tmp_path, "sync", "warehouse", "out").returncode == 4
    rows = json.loads(conn(tmp_path, "rejected", "customers_to_out", "--json").stdout)
    assert len(rows["rejected"]) == 1 and rows["rejected"][0]["attempts"] == 2
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute("DELETE FROM customers WHERE customer_id IS NULL")
    con.close()
    assert conn(tmp_path, "sync", "warehouse", "out").returncode == 0
    rows = json.loads(conn(tmp_path, "rejected", "customers_to_out", "--json").stdout)
    assert rows["rejected"] == []


@pytest.mark.parametrize("values", [
    pa.array([1, -(2**63), 2**63 - 1], pa.int64()),
    pa.array(["a", "", "é"], pa.string()),
    pa.array([1.5, -0.0, 1e300], pa.float64()),
    pa.array(["2024-01-01", "1970-01-01", "2262-04-11"], pa.string()).cast(pa.date32()),
    pa.array([b"\x00\xff", b"", b"x"], pa.binary()),
])
def test_stored_match_values_come_back_with_their_type(values):
    from conn.state import typed_text

    text, token = typed_text.to_text(values)
    assert pa.types.is_string(text.type)
    assert typed_text.from_text(text, token).equals(values)


@pytest.mark.slow
def test_explain_shows_what_each_destination_acknowledged_with_types(tmp_path):
    warehouse(tmp_path, [(1, "a@example.com", True), (2, "b@example.com", False)])
    (tmp_path / "conn.yml").write_text(PROJECT.format(extra="", dest="out"))
    assert conn(tmp_path, "sync", "warehouse", "out").returncode == 0
    done = conn(tmp_path, "explain", "1", "--json")
    assert done.returncode == 0, done.stderr
    (s,) = json.loads(done.stdout)["syncs"]
    assert s["keys"] == [1]
    (d,) = s["delivered"]
    assert d["key"] == 1 and d["match_value"] == 1 and d["acknowledged_at"].endswith("Z")
    (withheld,) = json.loads(conn(tmp_path, "explain", "2", "--json").stdout)["syncs"]
    assert withheld["would_send"] is False and withheld["delivered"] == []
    plain = conn(tmp_path, "explain", "1").stdout
    assert "delivered: customers 1 acknowledged" in plain
