"""Fixtures shared by the meta_audiences tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

# Shared CI machines stall for whole seconds; a per-example deadline then fails correct tests.
settings.register_profile("no-deadline", deadline=None)
settings.load_profile("no-deadline")

TOKEN = "EAAGm0PX4ZCpsBAtesttokenvalue"
AUDIENCE = "23850000000000001"


def _cassette_params(request: Any) -> dict[str, Any]:
    """A vcrpy request's Graph API parameters (query and form body), objects decoded,
    the token and the random session id left out."""
    import json
    from urllib.parse import parse_qsl, urlsplit

    params = dict(parse_qsl(urlsplit(request.uri).query, keep_blank_values=True))
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    if body:
        params.update(parse_qsl(body, keep_blank_values=True))
    params.pop("access_token", None)
    out: dict[str, Any] = {k: json.loads(v) if k in ("payload", "session") else v
                           for k, v in params.items()}
    if isinstance(out.get("session"), dict):
        out["session"].pop("session_id", None)
    return out


def _same_graph_params(r1: Any, r2: Any) -> None:
    a, b = _cassette_params(r1), _cassette_params(r2)
    assert a == b, f"request parameters differ from the cassette:\n sent: {a}\n want: {b}"


@pytest.fixture
def meta_cassette(cassette: Callable[..., Any]) -> Callable[[str], Any]:
    """conn's ``cassette`` matching method, URL path and the Graph API parameters
    wherever they travel (query string or form body), JSON-decoded, the session id
    excepted."""

    def use(name: str) -> Any:
        return cassette(name, match_body=False,
                        match_on=("method", "scheme", "host", "port", "path"),
                        matchers={"graph_params": _same_graph_params})

    return use


@pytest.fixture
def make_dest() -> Iterator[Callable[..., Any]]:
    """Build a destination whose retries do not really sleep."""
    from conn_destination_meta_audiences.destination import MetaAudiencesDestination

    made = []

    def factory(**config: Any) -> MetaAudiencesDestination:
        cfg = {"access_token": TOKEN, "audience_id": AUDIENCE, **config}
        MetaAudiencesDestination.validate_config(cfg)
        d = MetaAudiencesDestination(cfg, instance="meta")
        d.client_options = {"sleep": lambda s: None, "seed": 1}
        made.append(d)
        return d

    yield factory
    for d in made:
        d.close()


def graph_params(req: Any) -> dict[str, Any]:
    """The Graph API parameters of a recorded request (query string and form body, as
    facebook-business sends them), objects JSON-decoded."""
    import json
    from urllib.parse import parse_qsl

    params = {k: v[0] for k, v in req.query.items()}
    ctype = req.header("Content-Type") or ""
    if req.body and ctype.startswith("application/x-www-form-urlencoded"):
        params.update(parse_qsl(req.body.decode(), keep_blank_values=True))
    out: dict[str, Any] = {}
    for key, value in params.items():
        try:
            out[key] = json.loads(value) if key in ("payload", "session") else value
        except ValueError:
            out[key] = value
    return out


@pytest.fixture(autouse=True)
def _close_clients(close_http_clients: None) -> None:
    """Every test closes the HTTP clients its destinations opened (no stray sockets)."""
