"""The JSON API under ``/api`` (described by ``openapi.json`` next to this file).

Each endpoint calls the function the matching command calls (:mod:`conn.ops`,
:func:`conn.runtime.explain.explain`) and returns what that command prints with
``--json``, redacted the same way. The project (``conn.yml``) is read again for each
request and the state store opened and closed around it, so the UI sees what another
``conn sync`` just did and never holds the state a run needs.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conn import secrets
from conn.config import load_project
from conn.config.load import plugin_config_errors
from conn.errors import ConfigError, ConnError, SyncLocked, error_object
from conn.ops import history
from conn.ops import syncs as ops
from conn.runtime.runner import RunOptions, open_state_store
from conn.state.paused import paused

if TYPE_CHECKING:
    from conn.config.model import Project
    from conn.plugins import Registry
    from conn.state.contracts import StateStore


@dataclass
class Reply:
    """An API answer: HTTP status and a JSON-able body."""

    status: int
    body: Any


class NotFound(Exception):
    """The named sync, run or page does not exist (HTTP 404)."""


def _int(query: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"query parameter {name!r} must be an integer, not {raw!r}") \
            from None
    if not lo <= value <= hi:
        raise ValueError(f"query parameter {name!r} must be between {lo} and {hi}")
    return value


def _float(query: dict[str, str], name: str, default: float, lo: float, hi: float
           ) -> float:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"query parameter {name!r} must be a number, not {raw!r}") \
            from None
    if not lo <= value <= hi:
        raise ValueError(f"query parameter {name!r} must be between {lo:g} and {hi:g}")
    return value


def openapi() -> dict[str, Any]:
    """The API's OpenAPI 3.1 description."""
    text = resources.files("conn.ui").joinpath("openapi.json").read_text(encoding="utf-8")
    return dict(json.loads(text))


class Api:
    """The endpoints for one project. ``project``: ``conn.yml`` or its folder (None:
    found as the CLI finds it); ``registry``: the plugins, loaded once."""

    def __init__(self, project: Path | None, registry: Registry) -> None:
        self.project_path, self.registry = project, registry
        self._lock = threading.Lock()
        #: Runs started from the UI that have not ended, by sync.
        self._running: dict[str, threading.Thread] = {}
        self.routes: list[tuple[str, list[str], Callable[..., Reply]]] = [
            ("GET", ["openapi.json"], lambda q: Reply(200, openapi())),
            ("GET", ["syncs"], self.syncs),
            ("GET", ["syncs", "*"], self.sync),
            ("GET", ["syncs", "*", "runs"], self.runs),
            ("GET", ["syncs", "*", "rejected"], self.rejected),
            ("GET", ["syncs", "*", "preview"], self.preview),
            ("GET", ["runs", "*"], self.run),
            ("GET", ["people", "*"], self.person),
            ("GET", ["profiles"], self.profile_sets),
            ("GET", ["profiles", "*"], self.profile),
            ("GET", ["triggers"], self.triggers),
            ("GET", ["triggers", "*"], self.trigger),
            ("GET", ["experiments"], self.experiments),
            ("GET", ["experiments", "*", "report"], self.experiment_report),
            ("POST", ["syncs", "*", "run"], self.run_now),
            ("POST", ["syncs", "*", "retry"], self.retry),
            ("POST", ["syncs", "*", "pause"], self.pause),
            ("POST", ["syncs", "*", "resume"], self.resume),
        ]

    # --- dispatch -----------------------------------------------------------------------

    def handle(self, method: str, parts: list[str], query: dict[str, str],
               body: dict[str, Any]) -> Reply:
        """Answer ``METHOD /api/<parts...>``; errors as ``{"ok": false, "error": ...}``."""
        allowed = []
        for m, pattern, fn in self.routes:
            if len(pattern) != len(parts) or any(p not in ("*", x)
                                                 for p, x in zip(pattern, parts, strict=True)):
                continue
            allowed.append(m)
            if m != method:
                continue
            args = [x for p, x in zip(pattern, parts, strict=True) if p == "*"]
            try:
                reply = fn(*args, query, body) if m == "POST" else fn(*args, query)
            except NotFound as exc:
                reply = Reply(404, self._error(exc, str(exc)))
            except ValueError as exc:
                reply = Reply(400, self._error(exc, str(exc)))
            except SyncLocked as exc:
                reply = Reply(409, self._error(exc, str(exc)))
            except ConfigError as exc:
                reply = Reply(422, self._error(exc, str(exc)))
            except ConnError as exc:
                reply = Reply(500, self._error(exc, str(exc)))
            return Reply(reply.status, secrets.redact_obj(reply.body))
        if allowed:
            return Reply(405, {"ok": False, "error": {
                "type": "MethodNotAllowed", "message": f"use {' or '.join(allowed)}"}})
        return Reply(404, {"ok": False, "error": {"type": "NotFound", "message":
                                                  "no such endpoint; see /api/openapi.json"}})

    @staticmethod
    def _error(exc: BaseException, message: str) -> dict[str, Any]:
        code = int(getattr(exc, "exit_code", 1))
        return error_object(exc, code, secrets.redact(message))

    # --- helpers ------------------------------------------------------------------------

    def _project(self, validate: bool = False) -> Project:
        proj = load_project(self.project_path, registry=self.registry,
                            validate_plugins=True if validate else set())
        # Registers the value of every connector's secret fields, so that redaction
        # knows them before this process has run anything; problems are left to the
        # endpoints that use the connector.
        plugin_config_errors(proj, self.registry)
        return proj

    @contextlib.contextmanager
    def _store(self, proj: Project) -> Iterator[StateStore]:
        store = open_state_store(proj, self.registry)
        try:
            yield store
        finally:
            store.close()

    @staticmethod
    def _sync_of(proj: Project, name: str) -> None:
        if name not in proj.syncs:
            raise NotFound(f"no sync named {name!r} (declared: "
                           f"{', '.join(proj.syncs) or 'none'})")

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the runs started from the UI to end; True when none is left."""
        with self._lock:
            threads = list(self._running.values())
        for t in threads:
            t.join(timeout)
        return not any(t.is_alive() for t in threads)

    def running(self) -> list[str]:
        with self._lock:
            return [n for n, t in self._running.items() if t.is_alive()]

    # --- reads --------------------------------------------------------------------------

    def syncs(self, query: dict[str, str]) -> Reply:
        proj = self._project()
        with self._store(proj) as store:
            items = ops.overview(proj, store)
        busy = set(self.running())
        for s in items:
            s["running"] = s["name"] in busy
        return Reply(200, {"project": str(proj.file), "syncs": items})

    def sync(self, name: str, query: dict[str, str]) -> Reply:
        proj = self._project()
        self._sync_of(proj, name)
        limit = _int(query, "limit", 20, 1, 500)
        with self._store(proj) as store:
            item = next(s for s in ops.overview(proj, store) if s["name"] == name)
            item["runs"] = history.runs(store, name, limit)
            item["rejected_rows"] = len(store.rejections(name))
        item["running"] = name in self.running()
        return Reply(200, item)

    def runs(self, name: str, query: dict[str, str]) -> Reply:
        proj = self._project()
        self._sync_of(proj, name)
        with self._store(proj) as store:
            return Reply(200, {"runs": history.runs(store, name,
                                                    _int(query, "limit", 20, 1, 500))})

    def rejected(self, name: str, query: dict[str, str]) -> Reply:
        proj = self._project()
        self._sync_of(proj, name)
        key = query.get("key") or None
        with self._store(proj) as store:
            rows = history.rejected(proj, store, name, limit=_int(query, "limit", 100, 1,
                                                                  10_000), key=key)
        return Reply(200, {"sync": name, "rejected": rows})

    def preview(self, name: str, query: dict[str, str]) -> Reply:
        proj = self._project()
        self._sync_of(proj, name)
        return Reply(200, ops.preview(proj, self.registry, name,
                                      _int(query, "rows", 10, 0, 1000)))

    def run(self, run_id: str, query: dict[str, str]) -> Reply:
        proj = self._project()
        with self._store(proj) as store:
            detail = history.run_detail(proj, store, run_id)
        if detail is None:
            raise NotFound(f"no run {run_id!r} among the last {history.RUN_LOOKUP_LIMIT}")
        return Reply(200, detail)

    def person(self, subject: str, query: dict[str, str]) -> Reply:
        from conn.ops.people import explain_person

        proj = self._project(validate=True)
        with self._store(proj) as store:
            return Reply(200, explain_person(proj, subject, self.registry, store))

    def profile_sets(self, query: dict[str, str]) -> Reply:
        """``conn profiles stats --json``."""
        from conn.profiles.lookup import stats

        proj = self._project()
        return Reply(200, {"ok": True, "sets": stats(proj, query.get("set") or None)})

    def profile(self, key: str, query: dict[str, str]) -> Reply:
        """``conn profiles show KEY [--set NAME] --json``."""
        from conn.ops.profiles import ProfileNotFound, show

        proj = self._project()
        try:
            return Reply(200, {"ok": True, "profiles": show(proj, key,
                                                            query.get("set") or None)})
        except ProfileNotFound as exc:
            raise NotFound(str(exc)) from None

    def triggers(self, query: dict[str, str]) -> Reply:
        """``conn triggers --json``."""
        from conn.ops.triggers import triggers

        proj = self._project()
        recent = _int(query, "recent", 20, 0, 10_000)
        with self._store(proj) as store:
            return Reply(200, {"ok": True, "triggers": triggers(proj, store, recent=recent)})

    def trigger(self, name: str, query: dict[str, str]) -> Reply:
        """``conn triggers NAME --json``."""
        from conn.ops.triggers import trigger

        proj = self._project()
        recent = _int(query, "recent", 20, 0, 10_000)
        with self._store(proj) as store:
            found = trigger(proj, store, name, recent=recent)
        if found is None:
            raise NotFound(f"no trigger named {name!r} (declared: "
                           f"{', '.join(proj.raw.get('triggers') or {}) or 'none'})")
        return Reply(200, {"ok": True, "triggers": [found]})

    def experiments(self, query: dict[str, str]) -> Reply:
        """``conn experiments list --json``."""
        from conn.runtime.experiment_report import list_experiments

        proj = self._project()
        with self._store(proj) as store:
            return Reply(200, {"ok": True, "experiments": list_experiments(store)})

    def experiment_report(self, name: str, query: dict[str, str]) -> Reply:
        """``conn experiments report NAME --outcome ... [--source] [--key ...] [--alpha]
        --json``; ``key``: the columns, comma-separated."""
        from conn.runtime.experiment_report import UnknownExperiment, report

        outcome = (query.get("outcome") or "").strip()
        if not outcome:
            raise ValueError("query parameter 'outcome' is required: a stream of the "
                             "source or a query")
        alpha = _float(query, "alpha", 0.05, 0.0001, 0.5)
        keys = tuple(k.strip() for k in (query.get("key") or "").split(",") if k.strip())
        proj = self._project()
        with self._store(proj) as store:
            try:
                result = report(proj, self.registry, store, name, outcome,
                                source=query.get("source") or None, key=keys, alpha=alpha)
            except UnknownExperiment as exc:
                raise NotFound(str(exc)) from None
        return Reply(200, {"ok": True, **result})

    # --- actions ------------------------------------------------------------------------

    def run_now(self, name: str, query: dict[str, str], body: dict[str, Any], *,
                rejected_only: bool = False) -> Reply:
        """Start a run of the sync in the background (as ``conn sync`` would run it, or
        ``conn retry`` with ``rejected_only``); the new run shows in the sync's history
        when it ends."""
        proj = self._project()
        self._sync_of(proj, name)
        sync = proj.syncs[name]
        if not sync.source:
            raise ConfigError(f"sync {name!r} has no source: it is loaded by 'conn singer "
                              f"target --sync {name}'", file=str(proj.file),
                              path=f"syncs.{name}")
        # The configuration is checked now, so a mistake answers this request.
        ops.validate_connectors(proj, self.registry, [sync])
        with self._lock:
            if name in self._running and self._running[name].is_alive():
                return Reply(409, {"ok": False, "error": {
                    "type": "SyncLocked", "message": f"{name} is already running"}})
            thread = threading.Thread(target=self._run_in_background,
                                      args=(proj, sync, rejected_only),
                                      name=f"conn-ui-run-{name}", daemon=True)
            self._running[name] = thread
            thread.start()
        return Reply(202, {"sync": name, "status": "started", "rejected_only": rejected_only,
                           "paused": name in paused(proj.state_dir)})

    def _run_in_background(self, proj: Project, sync: Any, rejected_only: bool) -> None:
        import logging

        try:
            if rejected_only:
                ops.retry_rejected(proj, self.registry, sync.name)
            else:
                ops.run(proj, self.registry, [sync], RunOptions())
        except Exception as exc:  # the run's history holds what happened; log the rest
            logging.getLogger("conn.ui").warning(
                "run of %s from the UI failed: %s", sync.name,
                secrets.redact(f"{type(exc).__name__}: {exc}"))

    def retry(self, name: str, query: dict[str, str], body: dict[str, Any]) -> Reply:
        """Start a retry of the sync's rejected rows only, as ``conn retry`` (the same
        ops function): the rest of the source's changes wait for the next run."""
        return self.run_now(name, query, body, rejected_only=True)

    def pause(self, name: str, query: dict[str, str], body: dict[str, Any]) -> Reply:
        proj = self._project()
        self._sync_of(proj, name)
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise ValueError("'reason' must be a string")
        return Reply(200, ops.pause(proj, name, reason[:500]))

    def resume(self, name: str, query: dict[str, str], body: dict[str, Any]) -> Reply:
        proj = self._project()
        self._sync_of(proj, name)
        return Reply(200, ops.resume(proj, name))
