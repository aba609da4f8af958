"""``conn check``, ``conn discover``, ``conn plugins``, ``conn runs``."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conn import secrets
from conn.cli import output
from conn.cli.common import open_project, setup_logging
from conn.errors import CheckFailed, ConfigError, ConfigErrors, ConnError, exit_code_of

if TYPE_CHECKING:
    from conn.config.model import SyncConfig
    from conn.runtime.runner import PreparedSync


def check_project(project: Path | None, *, connect: bool, json_out: bool,
                  offline: bool = False) -> None:
    """Config, plugin configs, connections and every sync's mapping; all problems at once.
    ``offline``: the configuration only (conn.yml and each plugin's config), nothing
    opened or read, no network."""
    from conn.config.load import load_project
    from conn.plugins import get_registry
    from conn.runtime.report import RunInfo
    from conn.runtime.runner import SyncRunner

    setup_logging()
    registry = get_registry()
    results: list[dict[str, Any]] = []
    errors: list[ConnError] = []
    try:
        proj = load_project(project, registry=registry)
    except ConfigErrors as exc:
        errors = list(exc.errors)
        proj = None
    except ConfigError as exc:
        errors = [exc]
        proj = None
    if proj is not None:
        results.append({"check": "config", "target": str(proj.file), "ok": True})
        results += schedule_checks(proj)
    if proj is not None and not offline:
        if connect:
            for kind, table, get in (("source", proj.sources, registry.source_class),
                                     ("destination", proj.destinations,
                                      registry.destination_class)):
                for name, c in table.items():
                    entry = {"check": f"{kind} connection", "target": name, "ok": True}
                    try:
                        conn = get(c.type).create(c.config, instance=name,
                                                  project_dir=proj.dir)
                        with conn:
                            conn.check()
                    except ConnError as exc:
                        entry.update(ok=False, error=secrets.redact(str(exc)))
                    except Exception as exc:
                        entry.update(ok=False, error=secrets.redact(f"{type(exc).__name__}: "
                                                                    f"{exc}"))
                    results.append(entry)
        run = RunInfo.new(proj.dir, list(proj.syncs), dry_run=True)
        for sync in proj.syncs.values():
            entry = {"check": "sync mapping", "target": sync.name, "ok": True}
            if not sync.source:
                # Its stream's schema arrives with the Singer input: checked when
                # 'conn singer target --sync' runs.
                entry["note"] = "loaded by 'conn singer target --sync'"
                results.append(entry)
                continue
            runner = SyncRunner(proj, sync, registry, store=None, run=run)  # type: ignore[arg-type]
            expiry: dict[str, Any] | None = None
            try:
                src = runner._connector("source", sync.source)
                dst = runner._connector("destination", sync.destination)
                with src, dst:
                    prepared = runner.prepare(src, dst)
                    if prepared.gate.expiry.max_age:
                        expiry = _expiry_check(sync, prepared)
            except ConfigErrors as exc:
                entry.update(ok=False, error="; ".join(str(e) for e in exc.errors))
                errors += exc.errors
            except ConnError as exc:
                entry.update(ok=False, error=secrets.redact(str(exc)))
                errors.append(exc)
            except Exception as exc:
                entry.update(ok=False, error=secrets.redact(f"{type(exc).__name__}: {exc}"))
            results.append(entry)
            if expiry is not None:
                results.append(expiry)
    if proj is not None and offline:
        from conn.consent.expiry import expiry_warnings

        results += [{"check": "consent expiry", "target": s.name, "ok": True,
                     "note": "not read (offline)", "warnings": expiry_warnings(s)}
                    for s in proj.syncs.values()
                    if isinstance(s.consent, dict) and s.consent.get("max_age")]
    problems = [secrets.redact(str(e)) for e in errors]
    failed = [r for r in results if not r["ok"]]
    if json_out:
        output.print_json({"ok": not problems and not failed, "problems": problems,
                           "checks": results})
    else:
        if results:
            output.table("conn check", ["check", "target", "result"],
                         [[r["check"], r["target"], _result_text(r)] for r in results])
        for p in problems:
            output.error(p)
        if not problems and not failed:
            output.info("all checks passed" + (" (offline: configuration only)"
                                               if offline else ""))
    if errors:
        sys.exit(exit_code_of(errors))
    if failed:
        sys.exit(CheckFailed.exit_code)


def schedule_checks(proj: Any) -> list[dict[str, Any]]:
    """One result per sync with a ``schedule:``: what it says and, for a cron
    expression, when ``conn serve`` runs it next (an interval's first run is when serve
    starts)."""
    from datetime import UTC, datetime

    from conn.config.schedule import Cron

    now = datetime.now(UTC)
    out = []
    for sync in proj.syncs.values():
        sched = sync.schedule
        if sched is None:
            continue
        entry: dict[str, Any] = {"check": "schedule", "target": sync.name, "ok": True,
                                 "schedule": sched.describe(), "next_run": None}
        if isinstance(sched, Cron):
            nxt = sched.next_after(now, now)
            entry["next_run"] = nxt.isoformat(timespec="seconds").replace("+00:00", "Z")
            entry["next_run_local"] = nxt.astimezone(sched.tz).isoformat(timespec="seconds")
        out.append(entry)
    return out


def _expiry_check(sync: SyncConfig, p: PreparedSync) -> dict[str, Any]:
    """Read the sync's source as a run would (nothing is mapped or sent) and count, per
    purpose, the people (rows) whose expired consent withholds them."""
    from conn.consent.expiry import expiry_warnings, withheld_by_expiry
    from conn.keys import key_array
    from conn.source import SourceState

    gate, stream = p.gate, p.stream
    read = stream.narrowed(gate.columns_read()) if p.source.projection else stream
    batches = ((b, key_array(b, stream.primary_key)) for b in p.source.read(read)
               if not isinstance(b, SourceState))
    counts = withheld_by_expiry(gate, batches)
    return {"check": "consent expiry", "target": sync.name, "ok": True,
            "max_age": {k: str(v) for k, v in gate.expiry.max_age.items()},
            "now": counts["now"], "rows": counts["rows"],
            "withheld_by_expiry": counts["withheld"], "warnings": expiry_warnings(sync)}


def _result_text(r: dict[str, Any]) -> str:
    """The result column of ``conn check``'s table for one check."""
    if not r["ok"]:
        return str(r["error"])
    if r["check"] == "schedule":
        if r["next_run"] is None:
            return f"ok: {r['schedule']}, first run when conn serve starts"
        return f"ok: {r['schedule']}, next run {r['next_run']} ({r['next_run_local']})"
    parts = []
    if "withheld_by_expiry" in r:
        parts += [f"{p}: expiry withholds {n} of {r['rows']} people (max_age "
                  f"{r['max_age'][p]})" for p, n in r["withheld_by_expiry"].items()]
    if r.get("note") and r["check"] == "consent expiry":
        parts.append(r["note"])
    parts += [f"warning: {w}" for w in r.get("warnings", ())]
    return "; ".join(parts) or "ok"


def discover_source(source: str, *, project: Path | None, json_out: bool) -> None:
    proj, registry = open_project(project, only={source})
    if source not in proj.sources:
        raise ConfigError(f"no source named {source!r} (declared: "
                          f"{', '.join(proj.sources) or 'none'})", file=str(proj.file),
                          path="sources")
    c = proj.sources[source]
    cls = registry.source_class(c.type)
    with cls.create(c.config, instance=source, project_dir=proj.dir) as src:
        streams = src.discover()
    data: list[dict[str, Any]] = [
        {"stream": s.name, "primary_key": list(s.primary_key), "cursor": s.cursor,
         "personal": dict(s.personal),
         "columns": [{"name": f.name, "type": str(f.type), "nullable": f.nullable}
                     for f in s.schema]} for s in streams]
    if json_out:
        output.print_json({"source": source, "streams": data})
        return
    rows = [[d["stream"], ", ".join(d["primary_key"]) or "-",
             ", ".join(f"{c['name']}:{c['type']}" for c in d["columns"])] for d in data]
    output.table(f"streams of {source}", ["stream", "primary key", "columns"], rows)


def list_plugins(*, json_out: bool) -> None:
    from conn.plugins import get_registry

    setup_logging()
    reg = get_registry()
    reg.load_all()
    data = [p.as_dict() for p in reg.plugins]
    if json_out:
        output.print_json({"plugins": data})
        return
    rows = [[p["name"], p["group"], p["version"] or "", p["distribution"] or "",
             ", ".join(p["provides"]), p["error"] or "ok"] for p in data]
    output.table("installed plugins", ["name", "kind", "version", "distribution", "provides",
                                       "status"], rows)


def _store(project: Path | None) -> Any:
    from conn.runtime.runner import open_state_store

    proj, registry = open_project(project, only=set())
    return open_state_store(proj, registry)


def list_runs(sync: str | None, *, limit: int, project: Path | None, json_out: bool) -> None:
    from conn.ops.history import runs as history

    with contextlib.closing(_store(project)) as store:
        runs = history(store, sync, limit)
    if json_out:
        output.print_json({"runs": runs})
        return
    cols = ["run", "sync", "status", "started", "read", "denied", "ins", "upd", "del",
            "unch", "rej", "seconds"]
    rows = []
    for r in runs:
        rep = r.get("report", r)
        started = r.get("started_at") or rep.get("started_at")
        if isinstance(started, int | float):
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
        rows.append([r.get("run_id", rep.get("run_id")), r.get("sync", rep.get("name")),
                     rep.get("status"), started, rep.get("rows_read"),
                     rep.get("consent_denied"), rep.get("inserted"), rep.get("updated"),
                     rep.get("deleted"), rep.get("unchanged"), rep.get("rejected"),
                     rep.get("seconds")])
    output.table("runs", cols, rows)

