"""The PostgreSQL backend's :class:`~conn.state.contracts.PrivacyStore`: tables
``privacy_salt``, ``suppression``, ``erasures_pending`` and ``ledger`` in the project's
schema (state format 3). A subject is purged from a sync's rows under that sync's
advisory lock. The server's files are outside conn: deleted rows stay in its pages until
PostgreSQL vacuums them, so a purge runs ``VACUUM`` on the tables it changed."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from conn.state.contracts import LEDGER_ROOT, PENDING_COLUMNS, PrivacyStore, chain_hash

if TYPE_CHECKING:
    from conn.state.backends.postgres import PostgresStateStore

#: Created by the store's schema preparation (format 3).
DDL = """
CREATE TABLE IF NOT EXISTS {s}.privacy_salt (id integer PRIMARY KEY, salt bytea NOT NULL,
  created_at timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS {s}.suppression (digest text PRIMARY KEY, receipt_id text,
  added_at timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS {s}.erasures_pending (id text PRIMARY KEY, receipt_id text,
  target integer, sync text, match_value text, match_type text, key_digest text,
  hash bigint, created_at timestamptz DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS {s}.ledger (seq bigint PRIMARY KEY, receipt_id text NOT NULL,
  body text NOT NULL, prev text NOT NULL, hash text NOT NULL);
"""


class PostgresPrivacy(PrivacyStore):
    """Privacy tables of a :class:`PostgresStateStore`."""

    def __init__(self, store: PostgresStateStore) -> None:
        self.store = store
        self.s = store.schema

    def salt(self, create: bool = True) -> bytes | None:
        with self.store._connect() as conn:
            if create:
                conn.execute(f"INSERT INTO {self.s}.privacy_salt (id, salt) VALUES (1, %s) "
                             "ON CONFLICT (id) DO NOTHING", [secrets.token_bytes(32)])
            row = conn.execute(f"SELECT salt FROM {self.s}.privacy_salt WHERE id = 1"
                               ).fetchall()
        return bytes(row[0][0]) if row else None

    def suppressed(self) -> pa.Array:
        with self.store._connect() as conn:
            return pa.array([r[0] for r in conn.execute(
                f"SELECT digest FROM {self.s}.suppression").fetchall()], pa.string())

    def suppress(self, digests: list[str], receipt_id: str) -> None:
        with self.store._connect() as conn:
            conn.execute(f"INSERT INTO {self.s}.suppression (digest, receipt_id) SELECT d, %s "
                         "FROM unnest(%s::text[]) AS d ON CONFLICT DO NOTHING",
                         [receipt_id, sorted(set(digests))])

    def find(self, sync: str, exact: list[str], emails: list[str]) -> list[dict[str, Any]]:
        with self.store._connect() as conn:
            rows = conn.execute(
                f"""SELECT key, match_value, match_type, hash FROM {self.s}.records
                WHERE sync = %s AND (key = ANY(%s) OR match_value = ANY(%s)
                OR lower(btrim(match_value)) = ANY(%s) OR lower(btrim(key)) = ANY(%s))""",
                [sync, exact, exact, emails, emails]).fetchall()
        return [{"key": r[0], "match_value": r[1], "match_type": r[2],
                 "hash": (r[3] or 0) % (1 << 64)} for r in rows]

    def purge(self, sync: str, keys: list[str], texts: list[str], *,
              retired_only: bool = False) -> None:
        s = self.s
        if not keys:
            return
        with self.store._connect() as conn:
            # Retired states (``--new-target``) are kept under ``<sync>@retired-<time>``.
            retired = f"{sync}@retired-%"
            conn.execute(f"DELETE FROM {s}.records WHERE sync LIKE %s AND (key = ANY(%s) OR "
                         "lower(btrim(match_value)) = ANY(%s))", [retired, keys, keys])
            conn.execute(f"DELETE FROM {s}.rejections WHERE sync LIKE %s AND key = ANY(%s)",
                         [retired, keys])
        if retired_only:
            return
        lock_conn = self.store._connect(autocommit=True)
        try:
            self.store._lock(lock_conn, sync, "conn-forget", None)
            with self.store._connect() as conn:
                conn.execute(f"DELETE FROM {s}.records WHERE sync = %s AND key = ANY(%s)",
                             [sync, keys])
                conn.execute(f"DELETE FROM {s}.rejections WHERE sync = %s AND (key = ANY(%s) "
                             "OR EXISTS (SELECT 1 FROM unnest(%s::text[]) t "
                             "WHERE position(t IN reason) > 0 OR "
                             "position(t IN coalesce(excerpt, '')) > 0))", [sync, keys, texts])
            self._vacuum("records", "rejections")
        finally:
            self.store._unlock(lock_conn)

    def _vacuum(self, *tables: str) -> None:
        with self.store._connect(autocommit=True) as conn:
            for t in tables:
                conn.execute(f"VACUUM {self.s}.{t}")

    def scrub_history(self, texts: list[str], scrub: Callable[[str], str]) -> None:
        with self.store._connect() as conn:
            rows = conn.execute(
                f"""SELECT ctid::text, report::text FROM {self.s}.runs WHERE EXISTS
                (SELECT 1 FROM unnest(%s::text[]) t WHERE position(t IN report::text) > 0)""",
                [texts]).fetchall()
            for ctid, report in rows:
                conn.execute(f"UPDATE {self.s}.runs SET report = %s::jsonb "
                             "WHERE ctid = %s::tid", [scrub(report), ctid])
        self._vacuum("runs")

    def pending(self) -> list[dict[str, Any]]:
        with self.store._connect() as conn:
            rows = conn.execute(f"SELECT {', '.join(PENDING_COLUMNS)} FROM "
                                f"{self.s}.erasures_pending ORDER BY created_at, id"
                                ).fetchall()
        out = [dict(zip(PENDING_COLUMNS, r, strict=True)) for r in rows]
        for r in out:
            r["hash"] = (r["hash"] or 0) % (1 << 64)
        return out

    def add_pending(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with self.store._connect() as conn, conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {self.s}.erasures_pending ({', '.join(PENDING_COLUMNS)}) "
                f"VALUES ({', '.join(['%s'] * len(PENDING_COLUMNS))})",
                [[_signed(r[c]) if c == "hash" else r.get(c) for c in PENDING_COLUMNS]
                 for r in rows])

    def settle(self, ids: list[str]) -> None:
        if not ids:
            return
        with self.store._connect() as conn:
            conn.execute(f"DELETE FROM {self.s}.erasures_pending WHERE id = ANY(%s)", [ids])
        self._vacuum("erasures_pending")

    def ledger(self) -> list[dict[str, Any]]:
        with self.store._connect() as conn:
            rows = conn.execute(f"SELECT seq, receipt_id, body, prev, hash FROM "
                                f"{self.s}.ledger ORDER BY seq").fetchall()
        return [dict(zip(("seq", "receipt_id", "body", "prev", "hash"), r, strict=True))
                for r in rows]

    def append(self, receipt_id: str, body: str) -> dict[str, Any]:
        with self.store._connect() as conn:
            # One writer at a time: the next entry chains to the last one.
            conn.execute(f"LOCK TABLE {self.s}.ledger IN EXCLUSIVE MODE")
            last = conn.execute(f"SELECT seq, hash FROM {self.s}.ledger ORDER BY seq DESC "
                                "LIMIT 1").fetchall()
            seq, prev = (last[0][0] + 1, last[0][1]) if last else (1, LEDGER_ROOT)
            entry = {"seq": seq, "receipt_id": receipt_id, "body": body, "prev": prev,
                     "hash": chain_hash(prev, body)}
            conn.execute(f"INSERT INTO {self.s}.ledger VALUES (%s, %s, %s, %s, %s)",
                         [seq, receipt_id, body, prev, entry["hash"]])
        return entry


def _signed(v: Any) -> int:
    v = int(v or 0)
    return v - (1 << 64) if v >= 1 << 63 else v
