"""The memory backend's :class:`~conn.state.contracts.PrivacyStore`: Python lists and
Arrow tables in the process (tests and dry runs; lost at exit)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from conn.state.contracts import LEDGER_ROOT, PrivacyStore, chain_hash

if TYPE_CHECKING:
    from conn.state.backends.memory import MemoryStateStore


class MemoryPrivacy(PrivacyStore):
    """Privacy tables of a :class:`MemoryStateStore`."""

    def __init__(self, store: MemoryStateStore) -> None:
        self.store = store
        self._salt: bytes | None = None
        self._suppressed: dict[str, str] = {}
        self._pending: list[dict[str, Any]] = []
        self._ledger: list[dict[str, Any]] = []
        self._mutex = threading.Lock()

    def salt(self, create: bool = True) -> bytes | None:
        with self._mutex:
            if self._salt is None and create:
                self._salt = secrets.token_bytes(32)
            return self._salt

    def suppressed(self) -> pa.Array:
        return pa.array(list(self._suppressed), pa.string())

    def suppress(self, digests: list[str], receipt_id: str) -> None:
        for d in digests:
            self._suppressed.setdefault(d, receipt_id)

    def find(self, sync: str, exact: list[str], emails: list[str]) -> list[dict[str, Any]]:
        data = self.store._syncs.get(sync)
        if data is None or not data.records.num_rows:
            return []
        t = data.records
        mv = t.column("match_value")
        hit = pc.or_(pc.is_in(t.column("key"), pa.array(exact, pa.string())),
                     pc.is_in(mv, pa.array(exact, pa.string())))
        for col in (mv, t.column("key")):
            hit = pc.or_(hit, pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(col)),
                                       pa.array(emails, pa.string())))
        found = t.filter(pc.fill_null(hit, False))
        return [{"key": r["key"], "match_value": r["match_value"],
                 "match_type": r["match_type"], "hash": r["hash"]}
                for r in found.select(["key", "match_value", "match_type", "hash"])
                .to_pylist()]

    def purge(self, sync: str, keys: list[str], texts: list[str], *,
              retired_only: bool = False) -> None:
        data = self.store._syncs.get(sync)
        if data is None or not keys or retired_only:
            return  # (retired states are not kept in memory)
        gone = pa.array(keys, pa.string())
        data.records = data.records.filter(
            pc.invert(pc.is_in(data.records.column("key"), gone)))
        rej = data.rejections
        drop = pc.fill_null(pc.is_in(rej.column("key"), gone), False)
        for text in texts:
            for col in ("reason", "excerpt"):
                drop = pc.or_(drop, pc.fill_null(pc.match_substring(rej.column(col), text),
                                                 False))
        data.rejections = rej.filter(pc.invert(drop))

    def scrub_history(self, texts: list[str], scrub: Callable[[str], str]) -> None:
        for row in self.store._runs:
            text = json.dumps(row["report"], default=str)
            if any(t in text for t in texts):
                row["report"] = json.loads(scrub(text))

    def pending(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._pending]

    def add_pending(self, rows: list[dict[str, Any]]) -> None:
        self._pending.extend(dict(r, created_at=time.time()) for r in rows)

    def settle(self, ids: list[str]) -> None:
        done = set(ids)
        self._pending = [r for r in self._pending if r["id"] not in done]

    def ledger(self) -> list[dict[str, Any]]:
        return [dict(e) for e in self._ledger]

    def append(self, receipt_id: str, body: str) -> dict[str, Any]:
        with self._mutex:
            prev = self._ledger[-1]["hash"] if self._ledger else LEDGER_ROOT
            entry = {"seq": len(self._ledger) + 1, "receipt_id": receipt_id, "body": body,
                     "prev": prev, "hash": chain_hash(prev, body)}
            self._ledger.append(entry)
            return dict(entry)
