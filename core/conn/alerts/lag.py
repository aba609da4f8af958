"""Lag rules (``when: lag``): judged while a sync is followed, not after a run.

A followed sync (``conn sync --follow``, a ``follow: true`` job of ``conn serve``) never
ends a run for :func:`conn.alerts.after_run` to judge, and its lag matters most while it
runs. :class:`LagWatch` is a thread :func:`conn.runtime.streaming.follow` starts when a
lag rule watches the sync: every few seconds it asks the source for its lag
(:class:`~conn.streaming.SourceLag`) and acts on each rule's verdict with the same
state, cooldown, "resolved" notices and channels as every other rule
(:func:`conn.alerts.engine.notify`). A separate thread, so a destination that stopped
answering (the usual cause of a growing lag) does not stop the watch.

A rule fires once one of its thresholds has been passed (strictly) at every check for
``for_seconds``; it is resolved at the first check where none is passed. A lag the
source cannot tell right now (None, e.g. while it reconnects) neither fires nor
resolves it, and does not interrupt the time counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from conn import secrets
from conn.alerts.engine import TOPIC, Delivery, notify, project_name, state_key
from conn.alerts.rules import Verdict
from conn.config.alerts import LAG_LIMITS, AlertsConfig, Rule, load_alerts
from conn.streaming import SourceLag

if TYPE_CHECKING:
    from conn.config.model import Project
    from conn.state.contracts import StateStore

log = logging.getLogger("conn.alerts")
#: Checks happen every quarter of the shortest ``for_seconds``, within these bounds.
MIN_INTERVAL, MAX_INTERVAL = 1.0, 15.0
#: ``current()``: the source's lag now and the id of the run following the sync.
Current = Callable[[], tuple[SourceLag, str]]
#: ``on_alerts(deliveries)``: told of the notices a check tried (``conn serve``'s metrics).
AlertsFn = Callable[[list[Delivery]], None]


def lag_verdict(rule: Rule, lag: SourceLag, over_since: float | None,
                now: float) -> tuple[Verdict, float | None]:
    """The rule's verdict on ``lag`` and since when a threshold is passed (None: not
    passed), given that it was passed since ``over_since`` (see the module)."""
    known = [(k.removeprefix("above_"), getattr(lag, k.removeprefix("above_")),
              getattr(rule, k)) for k in LAG_LIMITS if getattr(rule, k) is not None]
    known = [(name, value, limit) for name, value, limit in known if value is not None]
    figures = {name: value for name, value, _ in known}
    if not known:
        return Verdict(None, "the source's lag is unknown right now"), over_since
    passed = [(name, value, limit) for name, value, limit in known if value > limit]
    if not passed:
        return Verdict(False, "source lag " + ", ".join(
            f"{n} {v:g} (threshold {lim:g})" for n, v, lim in known), figures), None
    since = now if over_since is None else over_since
    held = now - since
    text = ", ".join(f"{n} {v:g} above {lim:g}" for n, v, lim in passed)
    figures["for_seconds"] = round(held, 3)
    if held < rule.for_seconds:
        return Verdict(None, f"source lag {text} for {held:.1f} s"), since
    return Verdict(True, f"source lag {text} for {held:.0f} s", figures), since


class LagWatch:
    """Checks the lag rules watching one followed sync (see the module)."""

    def __init__(self, project: Project, store: StateStore, sync: str, config: AlertsConfig,
                 rules: list[Rule], current: Current, on_alerts: AlertsFn | None = None
                 ) -> None:
        self.project, self.store, self.sync = project, store, sync
        self.config, self.rules, self.current = config, rules, current
        self.on_alerts = on_alerts
        self.interval = min(MAX_INTERVAL, max(MIN_INTERVAL,
                                              min(r.for_seconds for r in rules) / 4))
        self._over: dict[str, float | None] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Every notice tried (for tests and ``--json``).
        self.deliveries: list[Delivery] = []

    @classmethod
    def start(cls, project: Project, store: StateStore, sync: str, current: Current,
              on_alerts: AlertsFn | None = None) -> LagWatch | None:
        """A running watch, or None when no lag rule watches ``sync`` (or the alerts
        section cannot be read: ``conn check`` names the problem)."""
        try:
            config = load_alerts(project)
        except Exception as exc:
            log.warning("alerts: lag rules not watched: %s", secrets.redact(exc))
            return None
        rules = [r for r in (config.rules.values() if config else ())
                 if r.when == "lag" and r.watches(sync)]
        if config is None or not rules or store.notes() is None:
            return None
        watch = cls(project, store, sync, config, rules, current, on_alerts)
        watch._thread = threading.Thread(target=watch._loop, name=f"lag-alerts-{sync}",
                                         daemon=True)
        watch._thread.start()
        return watch

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def check(self, now: float | None = None) -> list[Delivery]:
        """Judge every rule on the lag now; never raises (a failure is logged)."""
        try:
            lag, run_id = self.current()
            notes = self.store.notes()
            assert notes is not None
            states = notes.read(TOPIC)
            now = time.time() if now is None else now
            out: list[Delivery] = []
            for rule in self.rules:
                verdict, self._over[rule.name] = lag_verdict(
                    rule, lag, self._over.get(rule.name), now)
                out += notify(self.config, notes, states.get(state_key(rule.name, self.sync)),
                              rule, self.sync, verdict, project=project_name(self.project),
                              run_id=run_id, status="running", counts={}, now=now)
            self.deliveries += out
            if out and self.on_alerts is not None:
                self.on_alerts(out)
            return out
        except Exception as exc:  # alerting never stops a stream
            log.warning("alerts: lag rules of sync %s not checked: %s", self.sync,
                        secrets.redact(exc))
            return []

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=MAX_INTERVAL + 10)
