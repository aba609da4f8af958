"""``conn alerts list`` and ``conn alerts test``: the ``alerts:`` rules of conn.yml, their
last state per sync, and a test notice through their channels."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from conn.cli import output
from conn.cli.common import open_project
from conn.errors import ConfigError, ConnError


class AlertsNotDelivered(ConnError):
    """``conn alerts test``: a channel did not take the test notice."""

    exit_code = 1


def _config(project: Path | None) -> tuple[Any, Any, Any]:
    from conn.config.alerts import load_alerts

    proj, registry = open_project(project, only=set())
    config = load_alerts(proj)
    if config is None:
        raise ConfigError("no 'alerts:' section: nothing to list or test (see "
                          "docs/alerts.md)", file=str(proj.file), path="alerts")
    return proj, registry, config


def list_alerts(project: Path | None, *, json_out: bool) -> None:
    """Each rule, what it watches, its channels, and its last state per sync."""
    from conn.alerts.engine import TOPIC
    from conn.runtime.runner import open_state_store

    proj, registry, config = _config(project)
    with contextlib.closing(open_state_store(proj, registry)) as store:
        notes = store.notes()
        states = notes.read(TOPIC) if notes is not None else {}
    rules = []
    for rule in config.rules.values():
        mine = [s for s in states.values() if s.get("rule") == rule.name]
        rules.append({"rule": rule.name, "when": rule.when, "describe": rule.describe(),
                      "syncs": list(rule.syncs) if rule.syncs else "all",
                      "channels": list(rule.channels), "cooldown_seconds": rule.cooldown,
                      "states": sorted(mine, key=lambda s: str(s.get("sync")))})
    channels = [{"channel": c.name, "type": c.type,
                 "problem": c.problem.detail if c.problem else None}
                for c in config.channels.values()]
    if json_out:
        output.print_json({"rules": rules, "channels": channels})
        return
    rows = []
    for r in rules:
        for s in r["states"] or [{}]:
            rows.append([r["rule"], r["describe"], ",".join(r["channels"]),
                         s.get("sync", "-" if r["syncs"] == "all" else ",".join(r["syncs"])),
                         s.get("state", "-"), _when(s.get("last_sent")),
                         s.get("summary", ""), s.get("last_error") or ""])
    output.table("alert rules", ["rule", "when", "channels", "sync", "state", "last sent",
                                 "last summary", "last error"], rows)
    for c in channels:
        if c["problem"]:
            output.error(f"channel {c['channel']} cannot deliver: {c['problem']}")


def _when(t: Any) -> str:
    if not isinstance(t, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def send_test(rule_name: str | None, project: Path | None, *, json_out: bool) -> None:
    """Send a test notice through a rule's channels (every channel without a rule)."""
    from conn.alerts.engine import project_name, send_test_alert

    proj, _, config = _config(project)
    rule = None
    if rule_name is not None:
        rule = config.rules.get(rule_name)
        if rule is None:
            raise ConfigError(f"no alert rule named {rule_name!r} (declared: "
                              f"{', '.join(config.rules) or 'none'})", file=str(proj.file),
                              path="alerts.rules")
    sent = send_test_alert(config, rule, project_name(proj))
    if json_out:
        output.print_json({"ok": all(d.ok for d in sent),
                           "deliveries": [{"channel": d.channel, "ok": d.ok,
                                           "error": d.error} for d in sent]})
    else:
        for d in sent:
            output.info(f"{d.channel}: sent" if d.ok else f"{d.channel}: FAILED: {d.error}")
    failed = [d.channel for d in sent if not d.ok]
    if failed:
        raise AlertsNotDelivered(f"the test notice did not reach {', '.join(failed)}")
