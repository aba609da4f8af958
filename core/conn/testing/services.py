"""Test support for tests against real services (a message broker, a database server):
a session fixture for the service and one for a resource of each test's own, waiting for
a condition, a free loopback port, and a server process of the test's own.

Plugins whose tests need a service ship that service's client helpers in a ``testing``
module of their own (``conn_source_nats.testing``, ``conn_postgres.testing``), which
conn's end-to-end follow tests use too; what does not depend on the service is here.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar


class Service(Protocol):
    """Test helpers over one service's client."""

    #: What the service is and where, for the skip message ("Redis at 127.0.0.1:6379").
    what: str

    def unreachable(self) -> str | None:
        """Why the service cannot be used; None when it can."""

    def fresh(self) -> str:
        """Make a resource of a test's own (a stream, a queue, a key) and name it."""

    def remove(self, name: str) -> None:
        """Delete the resource ``name``."""


S = TypeVar("S", bound=Service)


def fixtures(make: Callable[[], S], skip: Callable[[str], Any], *, service: str,
             resource: str) -> tuple[Any, Any]:
    """Two pytest fixtures: ``service``, session-wide, gives ``make()`` (calling
    ``skip(reason)`` when it is not reachable), and ``resource`` names a fresh resource
    of the test's own (:meth:`Service.fresh`), removed after it. A conftest or test
    module binds them by those names, saying how a missing service ends a test
    (``pytest.skip``, or a function that fails under CI)::

        nats_server, js_stream = fixtures(Nats, pytest.skip, service="nats_server",
                                          resource="js_stream")
    """
    import pytest

    @pytest.fixture(scope="session", name=service)
    def service_fixture() -> S:
        made = make()
        reason = made.unreachable()
        if reason is not None:
            skip(f"{made.what} is not reachable: {reason}")
        return made

    @pytest.fixture(name=resource)
    def resource_fixture(request: Any) -> Iterator[str]:
        made: S = request.getfixturevalue(service)
        name = made.fresh()
        yield name
        made.remove(name)

    return service_fixture, resource_fixture


def eventually(check: Callable[[], Any], timeout: float = 60.0, what: Any = "") -> Any:
    """Poll ``check`` until it returns something true, and return that; fail after
    ``timeout`` seconds naming ``what`` (a text, or a callable giving one, evaluated at
    the failure)."""
    end = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(0.05)


def free_port() -> int:
    """A loopback TCP port free at the time of the call."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateServer:
    """A server process of the test's own on a free loopback port (``{port}`` and
    ``{dir}`` in ``argv`` are filled in; ``folder`` is made), which the test may
    restart: restarting the machine's shared server would break other tests running at
    the same time."""

    def __init__(self, argv: list[str], folder: Path) -> None:
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.argv = [a.format(port=self.port, dir=folder) for a in argv]
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and wait until it accepts connections on :attr:`port`."""
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False

        eventually(listening, timeout=timeout, what=f"{self.argv[0]} on port {self.port}")

    def stop(self) -> None:
        """SIGTERM (a clean shutdown: the server saves what it must), then wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None

    def restart(self, down: float = 1.0) -> None:
        """Stop, stay down ``down`` seconds (the follower's attempts fail), start."""
        self.stop()
        time.sleep(down)
        self.start()
