"""``conn explain SUBJECT``: the command's body (wired into the CLI by ``conn.cli.main``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _lines(result: dict[str, Any]) -> list[str]:
    out = [f"subject {result['subject']}: sent by "
           f"{', '.join(result['sent_by']) or 'no sync'}"]
    for s in result["syncs"]:
        head = f"- sync {s['sync']} -> {s['destination']}.{s['object']}: "
        if "error" in s:
            out.append(head + f"cannot check ({s['error']})")
            continue
        if s.get("config_errors"):
            out.append(head + "not runnable: " + "; ".join(s["config_errors"]))
            continue
        if not s["found"]:
            out.append(head + "subject not in the synced rows")
            out += _delivery_lines(s)
            continue
        out.append(head + ("WOULD SEND" if s["would_send"] else "withheld"))
        for p, c in s.get("consent", {}).items():
            verdict = "allowed" if c["allowed"] else "blocked"
            basis = f" ({c['legal_basis']})" if c.get("legal_basis") else ""
            until = ""
            if c.get("max_age"):
                when = c.get("expires_at") or "unknown"
                until = (f", expired {when}" if c["decision"] == "expired"
                         else f", consent expires {when}") + f" (max_age {c['max_age']})"
            out.append(f"    purpose {p}: {verdict}{basis}, {c['decision']}{until}")
            for ev in c["evidence"]:
                out.append("      " + ", ".join(f"{k}={v}" for k, v in ev.items()))
            for ev in c.get("identities", ()):
                out.append(f"      identity {ev['identity_type']}={ev['identity']}: "
                           f"{ev.get('status')} {ev.get('timestamp', '(no time)')}"
                           + (" (decided)" if ev.get("decided") else ""))
        for field, f in s["fields"].items():
            policy = f.get("policy") or {}
            pol = policy.get("action", "allow")
            if policy.get("kind"):
                pol += f" (personal: {policy['kind']}; {policy.get('rule')})"
            out.append(f"    field {field} <- {', '.join(f['from']) or '(constant)'}: {pol}")
        for reason in s.get("rejected", []):
            out.append(f"    rejected: {reason}")
        out += _experiment_lines(s)
        out += _delivery_lines(s)
    return out


def _experiment_lines(s: dict[str, Any]) -> list[str]:
    """The subject's arm in the sync's holdout experiment, and what the state recorded."""
    e = s.get("experiment")
    if not e:
        return []
    line = f"    experiment {e['name']} ({e['percent']:g} % held out): arm {e['arm']}"
    if not e.get("eligible"):
        line += " (not eligible while consent withholds the rows)"
    rec = e.get("recorded")
    if rec:
        line += f"; recorded {rec['arm']} since {rec['assigned_at']} (run {rec['run_id']})"
    return [line]


def _delivery_lines(s: dict[str, Any]) -> list[str]:
    """The recipient and what it acknowledged, since when."""
    out = []
    r = s.get("recipient")
    if r and (s.get("would_send") or s.get("delivered")):
        where = ", ".join(f"{k}={v}" for k, v in r.get("identity", {}).items())
        out.append(f"    recipient: {r['destination']} ({r['type']}), object {r['object']}"
                   + (f", {where}" if where else ""))
    for d in s.get("delivered", []):
        since = d.get("first_acknowledged_at")
        out.append(f"    delivered: {s['object']} {d['match_value']!r} acknowledged "
                   f"{d['acknowledged_at']} (run {d['run_id']})"
                   + (f", first acknowledged {since}" if since else ""))
    return out


def explain_command(subject: str, project: Path | None = None, json_out: bool = False
                    ) -> None:
    """Print where ``subject``'s data goes and why (``--json`` for machines)."""
    import contextlib

    from conn.cli.common import open_project
    from conn.cli.output import print_json
    from conn.ops.people import explain_person
    from conn.runtime.runner import open_state_store
    from conn.secrets import redact

    proj, registry = open_project(project)
    with contextlib.closing(open_state_store(proj, registry)) as store:
        result = explain_person(proj, subject, registry, store)
    if json_out:
        print_json(result)
        return
    for line in _lines(result) + _profile_lines(result["profiles"]):
        print(redact(line))


def _profile_lines(profiles: list[dict[str, Any]]) -> list[str]:
    out = []
    for p in profiles:
        ids = ", ".join(f"{i['type']}={i['value']}" for i in p["identities"])
        seen = ", ".join((p.get("golden") or {}).get("edges") or [])
        out.append(f"profile {p['profile_id']} (profiles.{p['set']}): {ids}"
                   + (f" (seen in {seen})" if seen else ""))
        for h in p["history"]:
            out.append(f"    {h['kind']}: {h['old_id']} -> {h['new_id']} "
                       f"({h['changed_at']})")
        if p["syncs"]:
            out += ["  " + line for line in _lines(
                {"subject": p["profile_id"], "syncs": p["syncs"],
                 "sent_by": [s["sync"] for s in p["syncs"] if s.get("would_send")]})]
    return out
