"""Enter a context manager on a helper thread while the caller goes on.

The runner opens a sync's state this way: creating or opening the state file, taking its
lock and loading the planner's state is mostly DuckDB and file work that releases the
GIL, and it overlaps the reading, gating and mapping of the first batch (a first full
sync of 1M rows: ~0.07 s of a ~1.1 s run). The context is exited on the caller's thread,
as if it had been entered there.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")


class OpenedInBackground(Generic[T]):
    """``with OpenedInBackground(cm) as opening:`` starts ``cm.__enter__()`` on a thread;
    :meth:`value` waits for it and returns what it gave (or raises what it raised). On
    leaving the block the thread is waited for, then ``cm`` is exited (only if it was
    entered), with the block's exception if any.

    If the block raised while entering also failed, the block's exception is the one
    that propagates (the entering error is attached as its ``__context__`` when it had
    none)."""

    def __init__(self, cm: AbstractContextManager[T], name: str = "conn-open") -> None:
        self._cm = cm
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._enter, name=name)

    def _enter(self) -> None:
        try:
            self._value = self._cm.__enter__()
        except BaseException as exc:  # re-raised on the caller's thread by value()
            self._error = exc

    def value(self) -> T:
        """What ``cm.__enter__()`` returned, once it has; raises what it raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def __enter__(self) -> OpenedInBackground[T]:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None:
        self._thread.join()
        if self._error is not None:
            if exc is not None and exc is not self._error and exc.__context__ is None:
                exc.__context__ = self._error
            return None  # never entered: nothing to exit
        return self._cm.__exit__(exc_type, exc, tb)
