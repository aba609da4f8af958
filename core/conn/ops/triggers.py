"""Triggers (docs/traits.md, "Triggers"): each with its definition, the syncs sending
its events, what its state holds and its recent firings (``conn triggers`` and the
UI's triggers page)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conn.ops.history import rows_sent

if TYPE_CHECKING:
    from conn.config.model import Project
    from conn.state.contracts import StateStore

#: Runs of a trigger's sync read for the events it fired (newest first).
RUNS_READ = 1000


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def _definition(raw: dict[str, Any]) -> dict[str, Any]:
    """The trigger as ``conn.yml`` declares it (its keys, in their order)."""
    return {str(k): v for k, v in raw.items()}


def _state(store: StateStore, sync: str, trigger: str, recent: int) -> dict[str, Any]:
    """What the trigger's state holds for ``sync``: keys watched, armed, that fired,
    events delivered (each key's count of acknowledged events), the last firing and the
    ``recent`` latest firings by key (key, when, how many times, last value)."""
    import pyarrow.compute as pc

    found = store.trigger_state(sync, trigger)
    if found is None:
        return {"kept": False, "keys": 0, "armed": 0, "keys_fired": 0,
                "events_delivered": 0, "last_fired_at": None, "recent": []}
    try:
        t = found.entries()
    finally:
        found.close()
    fired = t.filter(pc.fill_null(pc.greater(t.column("seq"), 0), False))
    top = fired.take(pc.select_k_unstable(fired, recent, [("fired_at", "descending"),
                                                          ("key", "ascending")])) \
        if fired.num_rows and recent else fired.slice(0, 0)
    last = pc.max(fired.column("fired_at")).as_py() if fired.num_rows else None
    return {
        "kept": True, "keys": t.num_rows,
        "armed": int(pc.sum(pc.cast(pc.fill_null(t.column("armed"), False), "int64"))
                     .as_py() or 0),
        "keys_fired": fired.num_rows,
        "events_delivered": int(pc.sum(fired.column("seq")).as_py() or 0),
        "last_fired_at": _iso(last),
        "recent": [{"key": r["key"], "fired_at": _iso(r["fired_at"]), "events": r["seq"],
                    "value": r["value"]} for r in top.to_pylist()],
    }


def _runs(store: StateStore, sync: str) -> dict[str, Any]:
    """The events the sync's recorded runs sent (acknowledged), had rejected or withheld
    by consent, and its last run."""
    history = [r for r in store.runs(sync, RUNS_READ) if r.get("status") != "dry_run"]
    rep = [r.get("report") or r for r in history]
    return {"runs": len(history),
            "events_sent": sum(rows_sent(r) for r in history),
            "events_rejected": sum(int(r.get("rejected") or 0) for r in rep),
            "events_withheld": sum(int(r.get("consent_denied") or 0) for r in rep),
            "last_run": None if not history else {
                k: history[0].get(k) for k in ("run_id", "status", "started_at")}}


def triggers(proj: Project, store: StateStore, *, recent: int = 20
             ) -> list[dict[str, Any]]:
    """Every trigger of ``conn.yml`` with its definition and, per sync sending its
    events, what its state holds (:func:`_state`) and what its runs sent (:func:`_runs`).
    ``events_fired`` counts the events the runs handed to the destination (sent or
    rejected); ``events_delivered`` those the destination acknowledged, as the
    trigger's state counts them."""
    declared = proj.raw.get("triggers") or {}
    out = []
    for name, raw in declared.items():
        syncs = []
        for sync in proj.syncs.values():
            if str(sync.raw.get("trigger") or "") != str(name):
                continue
            runs = _runs(store, sync.name)
            state = _state(store, sync.name, str(name), recent)
            syncs.append({"sync": sync.name, "destination": sync.destination,
                          "object": sync.object, **runs, **state,
                          "events_fired": runs["events_sent"] + runs["events_rejected"]})
        out.append({"name": str(name), "definition": _definition(raw if isinstance(
            raw, dict) else {}), "syncs": syncs,
            "events_fired": sum(s["events_fired"] for s in syncs),
            "events_delivered": sum(s["events_delivered"] for s in syncs)})
    return out


def trigger(proj: Project, store: StateStore, name: str, *, recent: int = 100
            ) -> dict[str, Any] | None:
    """One trigger (as :func:`triggers` gives it), or None when ``conn.yml`` declares
    none of that name."""
    if name not in (proj.raw.get("triggers") or {}):
        return None
    return next(t for t in triggers(proj, store, recent=recent) if t["name"] == name)
