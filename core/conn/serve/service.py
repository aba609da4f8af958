"""``conn serve`` for one project: the lock, the jobs, the scheduler, the endpoints, and
the drain.

SIGTERM or SIGINT (:mod:`conn.interrupt`) sets the stop request: the scheduler starts
nothing more, each run in flight stops as ``conn sync`` does on Ctrl-C (no further batch
read, no further request sent, the answers of requests in flight committed, status
``interrupted``), and the process exits **0** once every run has ended. If that takes
longer than the drain bound (``--drain-seconds``, default 10), or a second signal comes,
the process exits at once with **130**: what destinations acknowledged is committed
(every commit is a transaction), the rest is re-sent by the next start, as after a
crash.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from conn import interrupt
from conn.errors import ConfigError, ConfigErrors
from conn.serve.http import Fallback, StatusServer
from conn.serve.jobs import JobContext, jobs_for
from conn.serve.lock import ServeLock
from conn.serve.metrics import Metrics
from conn.serve.scheduler import Emit, Scheduler

if TYPE_CHECKING:
    from conn.config.model import Project
    from conn.plugins import Registry

#: Default drain bound, seconds (the same as a Ctrl-C'd ``conn sync``).
DRAIN_SECONDS = interrupt.GRACE_SECONDS
#: How often the main thread looks at the stop request while it waits, seconds.
_POLL = 0.2


def lock_path(project: Project) -> Any:
    """Where the lock of a project's ``conn serve`` is."""
    return project.state_dir / "serve.lock"


def _check_jobs(project: Project, names: list[str]) -> None:
    f = str(project.file)
    errors = [ConfigError("a sync without a source is loaded by 'conn singer target "
                          "--sync'; conn serve cannot run it on a schedule", file=f,
                          path=f"syncs.{n}.schedule")
              for n in names if not project.syncs[n].source]
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)


def serve(project: Project, registry: Registry, emit: Emit, *, host: str, port: int,
          drain_seconds: float = DRAIN_SECONDS,
          mount: Callable[[int], Fallback] | None = None) -> int:
    """Run the project's jobs until SIGTERM/SIGINT; the exit code (module docstring).
    ``mount(bound_port)``: what answers the other paths of the HTTP server (the UI)."""
    metrics = Metrics()
    jobs, idle = jobs_for(project, JobContext(project, registry, metrics))
    if not jobs:
        raise ConfigError("no sync has a 'schedule:', so conn serve has nothing to run; add "
                          "one to a sync, e.g. 'schedule: {every: 15m}' (docs/realtime.md)",
                          file=str(project.file), path="syncs")
    _check_jobs(project, [j.name for j in jobs if j.name in project.syncs])
    lock = ServeLock(lock_path(project)).acquire()
    server = None
    try:
        stop = interrupt.requested
        scheduler = Scheduler(jobs, metrics, stop, emit)

        try:
            server = StatusServer(host, port, metrics, scheduler.status, mount).start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                              f"choose another --port (0 picks a free one) or --host"
                              ) from None
        lock.update(url=server.url)
        with interrupt.handling(grace=drain_seconds):
            scheduler.plan()
            bound_host, bound_port = server.address
            emit("serving", project=str(project.file), url=server.url, host=bound_host,
                 port=bound_port, pid=os.getpid(), drain_seconds=drain_seconds)
            for name, state in scheduler.health().items():
                emit("scheduled", sync=name, schedule=state["schedule"],
                     next_run=state["next_run"])
            if idle:
                emit("unscheduled", syncs=idle, note="not run by serve (no schedule)")
            scheduler.start()
            while not stop.wait(_POLL):
                pass
            emit("draining", running=scheduler.running(), bound_seconds=drain_seconds)
            # The stop request's own timer ends the process at the bound (exit 130);
            # this wait is a little longer so that the timer, not a race, decides.
            drained = scheduler.drain(drain_seconds + 1.0)
        code = 0 if drained and scheduler.crashed is None else 130 if not drained else 1
        emit("stopped", drained=drained, exit_code=code)
        return code
    finally:
        if server is not None:
            server.close()
        lock.release()

