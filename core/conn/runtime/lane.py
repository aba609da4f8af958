"""The delivery lane: destination writes and state commits on one worker thread.

The runner reads, gates, maps and plans batch N+1 on the calling thread while the lane
writes batch N to the destination and commits its acknowledgements. Both halves spend
most of their time in Arrow, DuckDB, Parquet or network code that releases the GIL, so on
two cores a first full sync takes about the time of the slower half instead of the sum.

Guarantees the runner relies on:

* jobs run one at a time, in submission order, all on the same thread (a destination
  sees every write from that one thread; a state store sees commits in order);
* at most ``depth`` jobs wait or run, so memory stays bounded by the batch size;
* a job that returns ``False`` (a failed write) or raises stops the lane: the jobs queued
  after it are skipped, so nothing is sent after a failure, exactly as if those batches
  had not been read. A job's exception is re-raised on the calling thread by the next
  :meth:`submit`, :meth:`call` or :meth:`drain`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Protocol, TypeVar

from conn import secrets

log = logging.getLogger("conn.runtime")
T = TypeVar("T")

#: Jobs that may wait or run at once (one running, one queued behind it).
DEFAULT_DEPTH = 2


class JobSink(Protocol):
    """Where the runner's per-batch path hands its jobs: the lane, or a :class:`Bundle`."""

    def submit(self, job: Callable[[], bool | None]) -> None:
        """Take ``job`` (to run on the lane, in order)."""


class Bundle:
    """Jobs gathered on the calling thread, then run on the lane as one job, in order:
    a streaming micro-batch is planned while the lane still delivers the one before,
    and handed over whole. Calling it runs the jobs and stops at the first one that
    returns ``False`` (returning ``False``: the lane then stops)."""

    def __init__(self) -> None:
        self.jobs: list[Callable[[], bool | None]] = []

    def submit(self, job: Callable[[], bool | None]) -> None:
        """Add ``job`` after the others."""
        self.jobs.append(job)

    def __call__(self) -> bool:
        return all(job() is not False for job in self.jobs)


class DeliveryLane:
    """One worker thread running jobs in order; see the module docstring."""

    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._slots = threading.Semaphore(depth)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conn-delivery")
        self._futures: deque[Future[None]] = deque()
        self._stop = threading.Event()
        self._error: BaseException | None = None

    @property
    def stopped(self) -> bool:
        """Whether a job failed or asked to stop: later jobs are skipped."""
        return self._stop.is_set()

    def submit(self, job: Callable[[], bool | None]) -> None:
        """Queue ``job``; blocks while ``depth`` jobs wait or run. ``job`` returning
        ``False`` stops the lane."""
        self._raise_error()
        self._slots.acquire()
        try:
            self._futures.append(self._pool.submit(self._run, job))
        except BaseException:
            self._slots.release()
            raise
        while self._futures and self._futures[0].done():
            self._futures.popleft()

    def call(self, job: Callable[[], T]) -> T | None:
        """Run ``job`` on the lane after the queued jobs and return its result (used
        where the caller needs the outcome before going on, e.g. deletions); ``None``
        without running it if the lane has stopped."""
        self.drain()
        if self._stop.is_set():
            return None
        return self._pool.submit(job).result()

    def drain(self) -> None:
        """Wait for every queued job; re-raise the first job's exception, if any."""
        while self._futures:
            self._futures.popleft().result()
        self._raise_error()

    def _run(self, job: Callable[[], bool | None]) -> None:
        try:
            if self._stop.is_set():
                return
            if job() is False:
                self._stop.set()
        except BaseException as exc:  # re-raised on the calling thread
            if self._error is None:
                self._error = exc
            self._stop.set()
        finally:
            self._slots.release()

    def _raise_error(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    def close(self) -> None:
        """Wait for the worker thread to end (queued jobs run unless stopped)."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> DeliveryLane:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """On success wait for every job and raise a job's error. When the caller
        fails with an ordinary exception (a source error), the batches it already
        handed over are still delivered, as they would have been one at a time; on an
        interrupt (Ctrl-C, SystemExit) the queued jobs are skipped and only the running
        one finishes, so its commit stays consistent with what was sent."""
        if exc_type is not None and not issubclass(exc_type, Exception):
            self._stop.set()
        try:
            if exc_type is None:
                self.drain()
            else:
                for f in self._futures:
                    f.exception()  # wait; errors are already in self._error
                if self._error is not None:
                    log.warning("a delivery job also failed: %s",
                                secrets.redact(str(self._error)))
        finally:
            self.close()
