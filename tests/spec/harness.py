"""The differential test's plumbing: the random warehouse, conn.yml, the loopback webhook
receiver, the readers of each destination's content and the ``conn`` CLI runner.

Nothing here decides what conn should do; :mod:`tests.spec.model` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import yaml

CONN = [sys.executable, "-m", "conn.cli.main"]
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "test"}

#: Every first-party destination kind the test drives, and the modes each supports
#: (the plugin READMEs: files "upsert, insert, update, mirror and append"; webhook "any
#: mode works"; postgres upsert/insert/append/update/delete; singer "upsert | insert |
#: append | mirror").
KIND_MODES = {
    "files": ("upsert", "update", "insert", "mirror", "append"),
    "hook": ("upsert", "update", "insert", "mirror", "append"),
    "pg": ("upsert", "update", "insert", "mirror", "append"),
    "singer": ("upsert", "insert", "mirror", "append"),
}


# --- the warehouse --------------------------------------------------------------------


@dataclass
class SourceRow:
    """One row of the ``customers`` table, in source order (``seq``)."""

    seq: int
    key: Any
    email: str | None
    name: str | None
    ltv: Any
    consent: Any


@dataclass
class Warehouse:
    """The random warehouse as the test means it to be; written whole before each run."""

    key_type: str                    # BIGINT | VARCHAR
    consent_type: str                # BOOLEAN | INTEGER | VARCHAR
    subject_type: str                # type of consent_events.subject
    time_type: str = "TIMESTAMP"     # type of consent_events.updated_at
    ltv_type: str = "DOUBLE"         # DOUBLE | VARCHAR
    rows: list[SourceRow] = field(default_factory=list)
    #: (subject, purpose, status, instant in epoch seconds or None, spelling variant)
    events: list[tuple[Any, str, Any, int | None, int]] = field(default_factory=list)
    next_seq: int = 0

    def write(self, path: Path) -> None:
        """Write both tables into a fresh DuckDB file (replaced atomically)."""
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        con = duckdb.connect(str(tmp))
        try:
            con.execute(
                f"create table customers(seq integer, customer_id {self.key_type}, "
                f"email varchar, name varchar, ltv {self.ltv_type}, "
                f"opt_in {self.consent_type})")
            if self.rows:
                con.executemany("insert into customers values (?, ?, ?, ?, ?, ?)",
                                [(r.seq, r.key, r.email, r.name, r.ltv, r.consent)
                                 for r in self.rows])
            con.execute(f"create table consent_events(subject {self.subject_type}, "
                        f"purpose varchar, status varchar, updated_at {self.time_type})")
            if self.events:
                con.executemany("insert into consent_events values (?, ?, ?, ?)",
                                [(s, p, st, self.spell_time(t, v))
                                 for s, p, st, t, v in self.events])
        finally:
            con.close()
        os.replace(tmp, path)


    def spell_time(self, instant: int | None, variant: int) -> Any:
        """An event time as the column's type holds it (consent.md, "Timestamps": "Arrow
        timestamps/dates, ISO 8601 strings (offsets honoured; no offset means UTC) or
        epoch seconds"). A missing instant is NULL, or for text an unreadable string."""
        if instant is None:
            if self.time_type == "VARCHAR" and variant % 3:
                return ["soon", "2024-13-45T00:00:00Z"][variant % 2]
            return None
        utc = datetime.fromtimestamp(instant, UTC)
        if self.time_type == "TIMESTAMP":
            return utc.replace(tzinfo=None)
        if self.time_type == "BIGINT":
            return instant
        local = utc.astimezone(timezone(timedelta(hours=[1, -5][variant % 2])))
        return [utc.strftime("%Y-%m-%dT%H:%M:%SZ"), local.isoformat(),
                utc.strftime("%Y-%m-%d %H:%M:%S")][variant % 3]


# --- the webhook receiver -------------------------------------------------------------


class Receiver:
    """A loopback webhook endpoint that applies each batch keyed on the JSON value of the
    match key: upsert/insert set, update sets a known key and refuses an unknown one
    (``{"errors": [...]}``, webhook README "Replying"), append adds, delete removes."""

    def __init__(self) -> None:
        self.keyed: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.appended: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                reply = receiver.apply(self.path.strip("/"), json.loads(body))
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def apply(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        op, obj = payload.get("operation"), payload.get("object")
        if op == "ping":
            return {}
        match = payload["match_key"]
        errors = []
        with self.lock:
            keyed = self.keyed.setdefault((path, obj), {})
            for i, rec in enumerate(payload["records"]):
                k = json.dumps(rec.get(match))
                if op == "append":
                    self.appended.setdefault((path, obj), []).append(rec)
                elif op == "delete":
                    keyed.pop(k, None)
                elif op == "update" and k not in keyed:
                    errors.append({"index": i, "message": "unknown record",
                                   "retryable": False})
                else:
                    keyed[k] = rec
        return {"errors": errors} if errors else {}

    def content(self, path: str, obj: str) -> list[dict[str, Any]]:
        with self.lock:
            return (list(self.keyed.get((path, obj), {}).values())
                    + list(self.appended.get((path, obj), [])))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


# --- reading what each destination holds ----------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def files_content(out: Path, obj: str) -> list[dict[str, Any]]:
    """files README "Snapshot": ``_current/<object>.jsonl``. ``_op`` (the log's
    operation column) is not part of the delivered record."""
    return [{k: v for k, v in r.items() if k != "_op"}
            for r in read_jsonl(out / "_current" / f"{obj}.jsonl")]


def singer_content(out: Path, obj: str, key: str, append: bool) -> list[dict[str, Any]]:
    """Replay a Singer target's JSONL output: a record with ``_sdc_deleted_at`` deletes
    its key (singer README: deletes are "RECORDs with ``_sdc_deleted_at`` set"), any
    other record replaces its key's row (or is kept, for append)."""
    keyed: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for rec in read_jsonl(out / f"{obj}.jsonl"):
        clean = {k: v for k, v in rec.items() if not k.startswith("_sdc_")}
        if rec.get("_sdc_deleted_at") is not None:
            keyed.pop(json.dumps(rec.get(key)), None)
        elif append:
            rows.append(clean)
        else:
            keyed[json.dumps(rec.get(key))] = clean
    return list(keyed.values()) + rows


def pg_connect() -> Any:
    import psycopg

    return psycopg.connect(autocommit=True, connect_timeout=3, **{
        "host": PG["host"], "port": PG["port"], "user": PG["user"], "dbname": PG["database"]})


def pg_content(schema: str, table: str) -> list[dict[str, Any]]:
    with pg_connect() as con:
        exists = con.execute("select to_regclass(%s)", (f'"{schema}"."{table}"',)).fetchone()
        if not exists or exists[0] is None:
            return []
        cur = con.execute(f'select row_to_json(t)::text from "{schema}"."{table}" t')
        rows = [json.loads(r[0]) for r in cur.fetchall()]
    for row in rows:  # row_to_json spells a double's NaN and infinities as strings
        if row.get("ltv") in ("NaN", "Infinity", "-Infinity"):
            row["ltv"] = float(row["ltv"])
    return rows


# --- conn.yml and the CLI -------------------------------------------------------------


def conn(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real ``conn`` CLI in ``cwd``."""
    env = {**os.environ, "CONN_LOG_LEVEL": "WARNING", "COLUMNS": "200"}
    return subprocess.run([*CONN, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def conn_parallel(calls: list[tuple[str, ...]],
                  cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """Several read-only ``conn`` commands at once (both cores)."""
    env = {**os.environ, "CONN_LOG_LEVEL": "WARNING", "COLUMNS": "200"}
    procs = [subprocess.Popen([*CONN, *args], cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for args in calls]
    done = []
    for args, p in zip(calls, procs, strict=True):
        out, err = p.communicate(timeout=300)
        done.append(subprocess.CompletedProcess([*CONN, *args], p.returncode, out, err))
    return done


def dump_yaml(config: dict[str, Any], path: Path) -> None:
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def iter_json_objects(text: str) -> Iterator[Any]:
    dec = json.JSONDecoder()
    i = 0
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return
        obj, i = dec.raw_decode(text, i)
        yield obj
