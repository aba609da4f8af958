"""Past runs, one run's details and a sync's rejected rows: ``conn runs``, ``conn
rejected`` and the UI's run page."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from conn.errors import ConfigError

if TYPE_CHECKING:
    from conn.config.model import Project
    from conn.state.contracts import StateStore

#: How far back a run is looked up by its id (the history has no index by run id).
RUN_LOOKUP_LIMIT = 1000


def require_sync(proj: Project, sync: str) -> None:
    """Raise the CLI's error for a sync ``conn.yml`` does not declare."""
    if sync not in proj.syncs:
        raise ConfigError(f"no sync named {sync!r} (declared: "
                          f"{', '.join(proj.syncs) or 'none'})", file=str(proj.file),
                          path="syncs")


def runs(store: StateStore, sync: str | None, limit: int) -> list[dict[str, Any]]:
    """Past runs, newest first, as the state store keeps them (``conn runs --json``)."""
    return store.runs(sync, limit)


def rows_sent(run: dict[str, Any]) -> int:
    """Rows a destination acknowledged in a run: inserts, updates and deletes."""
    rep = run.get("report") or run
    return sum(int(rep.get(k) or 0) for k in ("inserted", "updated", "deleted"))


def rejected(proj: Project, store: StateStore, sync: str, *, limit: int | None,
             key: str | None = None) -> list[dict[str, Any]]:
    """A sync's rejected rows, newest first (``conn rejected``): key (typed as in the
    source), reason, operation, the run that rejected it, since when and in how many runs
    in a row, and ``excerpt``: the vendor exchange that rejected it (``method``,
    ``path``, ``status``, ``request``: the row's part of the request body, ``response``:
    the start of the answer; secrets masked) or None. ``key``: only rows whose key, as
    text, contains it (case-insensitive)."""
    from conn.keys import typed_keys
    from conn.state.target import stored_key_types

    require_sync(proj, sync)
    rows = store.rejections(sync, None if key else limit)
    if key:
        needle = key.casefold()
        rows = [r for r in rows if needle in str(r.get("key")).casefold()]
        rows = rows if limit is None else rows[:limit]
    key_types = stored_key_types(store.stored_target(sync)) if rows else None
    for r, typed in zip(rows, typed_keys([r.get("key") for r in rows], key_types),
                        strict=True):
        r["key"] = typed
        r["excerpt"] = _excerpt(r.get("excerpt"))
    return rows


def _excerpt(text: Any) -> dict[str, Any] | None:
    """A stored excerpt (JSON text) as an object; None when there is none."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def run_detail(proj: Project, store: StateStore, run_id: str) -> dict[str, Any] | None:
    """One run of the history with what its page shows, or None when it is not among the
    last :data:`RUN_LOOKUP_LIMIT` runs: counts by operation and outcome, duration, the
    consent funnel per purpose, its rejection reasons, and the sync's rejected rows that
    this run rejected (still current)."""
    found = [r for r in store.runs(None, RUN_LOOKUP_LIMIT) if r.get("run_id") == run_id]
    if not found:
        return None
    row = found[0]
    rep: dict[str, Any] = dict(row.get("report") or {})
    sync = str(row.get("sync") or rep.get("name"))
    current = rejected(proj, store, sync, limit=None) if sync in proj.syncs else []
    mine = [r for r in current if r.get("run_id") == run_id]
    by_op: dict[str, int] = {}
    for r in mine:
        op = str(r.get("op") or "unknown")
        by_op[op] = by_op.get(op, 0) + 1
    consent = rep.get("consent") or {}
    funnel = [{"purpose": p, "rows": consent.get("rows", rep.get("rows_read", 0)),
               "passed": v.get("passed", 0), "withheld": v.get("withheld", {}),
               "legal_bases": v.get("legal_bases", {})}
              for p, v in (consent.get("per_purpose") or {}).items()]
    return {
        "run_id": run_id, "sync": sync, "status": row.get("status"),
        "started_at": row.get("started_at"), "seconds": row.get("seconds"),
        "source": rep.get("source"), "destination": rep.get("destination"),
        "object": rep.get("object"), "mode": rep.get("mode"), "error": rep.get("error"),
        "counts": {
            "read": int(rep.get("rows_read") or 0),
            "consent_denied": int(rep.get("consent_denied") or 0),
            "unchanged": int(rep.get("unchanged") or 0),
            "pending": int(rep.get("pending") or 0),
            "succeeded": {op: int(rep.get(k) or 0) for op, k in
                          (("insert", "inserted"), ("update", "updated"),
                           ("delete", "deleted"))},
            "rejected": int(rep.get("rejected") or 0),
            "rejected_by_operation": by_op,
        },
        "consent_funnel": {"rows": consent.get("rows", rep.get("rows_read", 0)),
                           "passed": consent.get("passed"),
                           "withheld_by_reason": consent.get("withheld_by_reason", {}),
                           "purposes": funnel},
        "rejection_reasons": rep.get("rejection_reasons") or {},
        "rejected_rows": mine,
        "rejected_rows_current": len(current),
    }
