"""Stopping a run when the user asks (Ctrl-C, SIGTERM): promptly, keeping what was
acknowledged.

The first signal only *requests* a stop: the runner reads no further batch, destinations
send no further request, HTTP retries stop waiting, and each request already in flight
gets its answer committed (or stays pending) before the run ends with status
``interrupted``. If that takes longer than the grace period, or a second signal comes,
the process ends at once: state commits are transactions, so it is as safe as a crash,
and nothing acknowledged is lost.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

#: Set once a stop was requested.
requested = threading.Event()
#: Seconds a requested stop may take before the process ends anyway.
GRACE_SECONDS = 10.0


def request() -> None:
    """Ask the running work to stop (what the first Ctrl-C does)."""
    requested.set()


def is_requested() -> bool:
    """Whether a stop was requested."""
    return requested.is_set()


def wait(seconds: float) -> bool:
    """Sleep up to ``seconds``; True (early) when a stop is requested meanwhile."""
    return requested.wait(max(0.0, seconds))


def clear() -> None:
    """Forget a request (tests; a long-running process between runs)."""
    requested.clear()


def _say(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


@contextlib.contextmanager
def handling(grace: float = GRACE_SECONDS, *,
             exit_now: Callable[[int], None] = os._exit) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM request a stop instead of raising; a second
    signal, or a stop that takes longer than ``grace`` seconds, ends the process with
    exit code 130. Only on the main thread (signals are delivered there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def now(reason: str) -> None:
        _say(f"{reason}; exiting now. What destinations acknowledged is saved (commits "
             "are atomic); everything else stays pending for the next run.")
        exit_now(130)

    timers: list[threading.Timer] = []

    def on_signal(signum: int, frame: object) -> None:
        if requested.is_set():
            now("interrupted again")
            return
        request()
        _say(f"stopping: finishing the requests in flight (at most {grace:.0f} s; press "
             "Ctrl-C again to exit at once)")
        timer = threading.Timer(grace, now, args=(f"still busy after {grace:.0f} s",))
        timer.daemon = True
        timers.append(timer)
        timer.start()

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, on_signal)
    try:
        yield
    finally:
        for t in timers:
            t.cancel()
        for s, handler in previous.items():
            signal.signal(s, handler)
