"""After a run: evaluate every rule for every sync of the run, decide from the state
what to send (a new alert, a reminder after the cooldown, a resolved notice, or
nothing), send it, and remember what was sent.

The last state of each rule and sync is a :class:`~conn.state.contracts.Notes` document
(topic ``alerts``, key ``RULE/SYNC``) in the project's state store, so ``conn sync``
from cron and ``conn serve`` share it. A rule's state changes only when at least one of
its channels took the notice: a notice no channel took is tried again after the next run.

Nothing here raises into the run: a failure is logged (redacted) and returned as a
:class:`Delivery` with ``ok=False`` (``conn serve`` counts them in /metrics).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conn import secrets
from conn.alerts.channels import DeliveryFailed, deliver
from conn.alerts.message import Alert, counts_of
from conn.alerts.rules import Verdict, evaluate
from conn.config.alerts import AlertsConfig, Rule, load_alerts

if TYPE_CHECKING:
    from conn.config.model import Project
    from conn.runtime.report import RunReport
    from conn.state.contracts import Notes, StateStore

log = logging.getLogger("conn.alerts")
TOPIC = "alerts"


@dataclass(frozen=True)
class Delivery:
    """One notice to one channel: ``kind`` (firing, resolved, test), ``ok``, ``error``."""

    rule: str
    sync: str
    channel: str
    kind: str
    ok: bool
    error: str | None = None


def state_key(rule: str, sync: str) -> str:
    return f"{rule}/{sync}"


def decide(previous: dict[str, Any] | None, verdict: Verdict, now: float,
           cooldown: float) -> str | None:
    """What to send: ``firing`` (it starts firing, or fires on after ``cooldown``
    seconds since the last notice), ``resolved`` (it stopped firing), or None."""
    was_firing = (previous or {}).get("state") == "firing"
    if verdict.firing is None:
        return None
    if verdict.firing:
        if not was_firing:
            return "firing"
        last = (previous or {}).get("last_sent")
        return "firing" if last is None or now - float(last) >= cooldown else None
    return "resolved" if was_firing else None


def after_run(project: Project, store: StateStore, report: RunReport) -> list[Delivery]:
    """Evaluate the project's alert rules for each sync of a finished run; never raises."""
    return after_reports(project, store, [s.as_dict() for s in report.syncs])


def after_reports(project: Project, store: StateStore, reports: list[dict[str, Any]]
                  ) -> list[Delivery]:
    """:func:`after_run` on syncs' reports (``SyncReport.as_dict()``); never raises."""
    try:
        config = load_alerts(project)
        if config is None or not config.rules:
            return []
        notes = store.notes()
        if notes is None:
            log.warning("alerts: the state backend keeps no notes; alerts are not sent")
            return []
        out: list[Delivery] = []
        for rep in reports:
            out += evaluate_sync(config, notes, store, rep, project_name(project))
        return out
    except Exception as exc:  # alerting must never fail the sync it reports on
        log.warning("alerts: could not evaluate the rules: %s", secrets.redact(exc))
        return []


def project_name(project: Project) -> str:
    return project.dir.name


def evaluate_sync(config: AlertsConfig, notes: Notes, store: StateStore,
                  report: dict[str, Any], project: str = "",
                  now: float | None = None) -> list[Delivery]:
    """Every rule watching the sync of ``report`` (a ``SyncReport.as_dict()``)."""
    sync, run_id = str(report.get("name")), str(report.get("run_id", ""))
    # Lag rules are judged while a sync is followed (conn.alerts.lag), not after a run.
    rules = [r for r in config.rules.values() if r.watches(sync) and r.when != "lag"]
    if not rules:
        return []
    states = notes.read(TOPIC)
    window = max((r.window for r in rules if r.when == "volume"), default=0)
    # Failed runs are skipped when the baseline is built: look back further than N.
    history = store.runs(sync, limit=5 * window + 1) if window else []
    now = time.time() if now is None else now
    out: list[Delivery] = []
    for rule in rules:
        try:
            verdict = evaluate(rule, report, history)
        except Exception as exc:
            log.warning("alerts: rule %s failed on sync %s: %s", rule.name, sync,
                        secrets.redact(exc))
            continue
        out += notify(config, notes, states.get(state_key(rule.name, sync)), rule, sync,
                      verdict, project=project, run_id=run_id,
                      status=str(report.get("status")), counts=counts_of(report), now=now)
    return out


def notify(config: AlertsConfig, notes: Notes, previous: dict[str, Any] | None, rule: Rule,
           sync: str, verdict: Verdict, *, project: str, run_id: str, status: str,
           counts: dict[str, Any], now: float) -> list[Delivery]:
    """Act on one rule's ``verdict`` for ``sync`` given its ``previous`` state: send what
    :func:`decide` says, and remember it (or count a notice held back by the cooldown)."""
    key = state_key(rule.name, sync)
    kind = decide(previous, verdict, now, rule.cooldown)
    if kind is None:
        if verdict.firing and previous:  # held back by the cooldown
            previous["suppressed"] = int(previous.get("suppressed", 0)) + 1
            previous["last_run_id"] = run_id
            notes.write(TOPIC, key, previous)
        return []
    alert = Alert(kind, rule.name, sync, verdict.summary, project, run_id, status,
                  config.link_for(sync, run_id), counts, verdict.figures, now)
    sent = send(config, rule, alert)
    notes.write(TOPIC, key, _next_state(previous, rule, alert, sent))
    return sent


def send(config: AlertsConfig, rule: Rule, alert: Alert) -> list[Delivery]:
    """Send ``alert`` to each of the rule's channels; log each outcome."""
    out = []
    for name in rule.channels:
        try:
            deliver(config.channels[name], alert)
        except DeliveryFailed as exc:
            error = secrets.redact(str(exc))
            log.warning("alerts: %s notice of rule %s for sync %s not delivered: %s",
                        alert.kind, rule.name, alert.sync, error)
            out.append(Delivery(rule.name, alert.sync, name, alert.kind, False, error))
        else:
            log.info("alerts: %s notice of rule %s for sync %s sent to %s", alert.kind,
                     rule.name, alert.sync, name)
            out.append(Delivery(rule.name, alert.sync, name, alert.kind, True))
    return out


def _next_state(previous: dict[str, Any] | None, rule: Rule, alert: Alert,
                sent: list[Delivery]) -> dict[str, Any]:
    state = dict(previous or {"rule": rule.name, "sync": alert.sync, "state": "ok",
                              "since": None, "last_sent": None, "sent": 0, "suppressed": 0})
    state["last_run_id"] = alert.run_id
    state["summary"] = alert.summary
    failures = [d.error for d in sent if not d.ok]
    state["last_error"] = failures[0] if failures else None
    if not any(d.ok for d in sent):
        return state  # nothing went: the same notice is tried after the next run
    if alert.kind == "firing" and state.get("state") != "firing":
        state["since"] = alert.at
    state["state"] = "firing" if alert.kind == "firing" else "ok"
    if alert.kind == "resolved":
        state["since"] = alert.at
    state["last_sent"] = alert.at
    state["last_kind"] = alert.kind
    state["sent"] = int(state.get("sent", 0)) + 1
    state["suppressed"] = 0
    return state


def send_test_alert(config: AlertsConfig, rule: Rule | None, project: str = ""
               ) -> list[Delivery]:
    """``conn alerts test [RULE]``: a test notice to the rule's channels (every channel
    without a rule); the rules' state is left alone."""
    target = rule or Rule("test", "failed", tuple(config.channels), None, 0.0)
    alert = Alert("test", target.name, "(test)",
                  "A test notice from 'conn alerts test': this channel works.", project)
    return send(config, target, alert)
