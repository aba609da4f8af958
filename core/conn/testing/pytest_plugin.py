"""conn's pytest plugin (``pytest11`` entry point): fixtures for plugin authors.

Nothing heavy is imported at import time; each fixture imports its module when used, so
merely having conn installed does not slow down anybody's test start-up.

Fixtures
--------
``fault_server``
    A started :class:`conn.testing.http.FaultServer` on 127.0.0.1 (stopped afterwards).
    Configure it in the test (``fault_server.configure(rate_limit=5, ...)``) or emulate a
    vendor with ``fault_server.handler = ...``.
``vcr_for``
    ``vcr_for(cassette_dir=None, record_mode="none", ...)`` returns a ``vcr.VCR`` that
    filters secrets (:func:`conn.testing.http.make_vcr`), with cassettes stored next to
    the test module in ``cassettes/`` by default.
``close_http_clients``
    Closes every :class:`conn.http.HttpClient` the test opened when it ends (their
    pooled sockets), as the runtime closes a destination after a run; tests that build
    destinations and write through them directly use it (autouse it in a conftest with
    ``pytestmark = pytest.mark.usefixtures("close_http_clients")`` or a wrapper fixture)
    so that no socket is left for the garbage collector (``ResourceWarning``).
``clean_secrets``
    Empties conn's registry of secret values (:mod:`conn.secrets`, what redaction masks)
    before and after the test, so one test's secrets neither mask nor leak into
    another's output; autouse it through a wrapper fixture in a conftest.
``cassette``
    ``with cassette("name") as cas:`` replays ``cassettes/name.yaml`` beside the test
    module, never recording, matching method, URL and the request body as parsed data
    (key order and spacing aside); each recorded interaction plays at most once, and
    ``cas.all_played`` tells whether every one did. Options of :func:`make_vcr` go
    along: ``cassette("name", match_body=False, matchers={...})``.

Conformance suites
------------------
``conn.testing.source_suite(...)`` and ``conn.testing.destination_suite(...)`` (module
:mod:`conn.testing.conformance`) build a whole test class in one call; this plugin has
pytest rewrite their assertions so failures show the compared values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conn.testing.http import FaultServer

pytest.register_assert_rewrite("conn.testing.conformance")


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A fault-injecting HTTP server on 127.0.0.1, seeded (deterministic), no faults by
    default; see :class:`conn.testing.http.FaultServer`."""
    from conn.testing.http import FaultServer

    with FaultServer(seed=0) as server:
        yield server


@pytest.fixture
def clean_secrets() -> Iterator[None]:
    """conn's registry of secret values is empty before and after the test."""
    from conn import secrets

    secrets.clear()
    yield
    secrets.clear()


@pytest.fixture
def close_http_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every :class:`conn.http.HttpClient` opened during the test when it ends."""
    from conn.http import HttpClient

    opened: list[HttpClient] = []
    init = HttpClient.__init__

    def tracking_init(self: HttpClient, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(HttpClient, "__init__", tracking_init)
    yield
    for client in opened:
        client.close()


@pytest.fixture
def vcr_for(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Factory of configured ``vcr.VCR`` objects whose cassettes live in ``cassettes/``
    beside the requesting test module (see :func:`conn.testing.http.make_vcr`)."""
    from pathlib import Path

    from conn.testing.http import make_vcr

    default_dir = Path(str(request.node.path)).parent / "cassettes"

    def factory(cassette_dir: str | Path | None = None, **kwargs: Any) -> Any:
        return make_vcr(cassette_dir or default_dir, **kwargs)

    return factory


@pytest.fixture
def cassette(vcr_for: Callable[..., Any]) -> Callable[..., Any]:
    """``with cassette("name"):`` replays ``cassettes/name.yaml`` beside the test module
    (never records), matching method, URL and request body; each interaction plays at
    most once. Keyword arguments go to :func:`conn.testing.http.make_vcr`."""

    def use(name: str, **options: Any) -> Any:
        options.setdefault("match_body", True)
        v = vcr_for(record_mode="none", **options)
        return v.use_cassette(name, allow_playback_repeats=False)

    return use
