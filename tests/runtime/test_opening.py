"""OpenedInBackground: a context entered on a helper thread, exited on the caller's."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from conn.errors import ConfigError, StateError
from conn.runtime.opening import OpenedInBackground


@contextmanager
def _resource(events: list[str], started: threading.Event | None = None,
              fail: BaseException | None = None) -> Iterator[str]:
    events.append(f"enter on {threading.current_thread().name}")
    if started is not None and not started.wait(5):
        raise TimeoutError("entered on the caller's thread: the caller never went on")
    if fail is not None:
        raise fail
    try:
        yield "state"
    except BaseException as exc:
        events.append(f"exit with {type(exc).__name__}")
        raise
    else:
        events.append(f"exit on {threading.current_thread().name}")


def test_enters_on_a_thread_while_the_caller_goes_on() -> None:
    events: list[str] = []
    go = threading.Event()
    with OpenedInBackground(_resource(events, go), "opener") as opening:
        go.set()  # the opener waits for this: it runs while the caller goes on
        assert opening.value() == "state"
        assert opening.value() == "state"
    assert events == ["enter on opener", "exit on MainThread"]


def test_the_blocks_exception_reaches_the_context() -> None:
    events: list[str] = []
    with pytest.raises(ConfigError), OpenedInBackground(_resource(events)):
        raise ConfigError("bad mapping")
    assert events[-1] == "exit with ConfigError"  # entered, so exited (e.g. lock released)


def test_an_entering_error_is_raised_by_value_and_nothing_is_exited() -> None:
    events: list[str] = []
    with pytest.raises(StateError, match="in use"), \
            OpenedInBackground(_resource(events, fail=StateError("in use"))) as opening:
        opening.value()
    assert events == ["enter on conn-open"]


def test_the_blocks_own_error_wins_over_an_entering_error() -> None:
    events: list[str] = []
    with pytest.raises(ConfigError) as got, \
            OpenedInBackground(_resource(events, fail=StateError("in use"))):
        raise ConfigError("source unreadable")
    assert isinstance(got.value.__context__, StateError)


def test_an_unused_opening_is_still_waited_for_and_closed() -> None:
    events: list[str] = []
    with OpenedInBackground(_resource(events)):
        pass
    assert events == ["enter on conn-open", "exit on MainThread"]
    assert all(t.name != "conn-open" for t in threading.enumerate())
