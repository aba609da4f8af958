"""Shared HTTP settings of destinations: JSON-Schema fragments and the client they build.

Most HTTP destinations let the user tune the same things: ``concurrency`` (batches in
flight), ``timeout`` (seconds per request) and retries. Two spellings of the retry
settings exist and both are public config of existing plugins:

* nested (:func:`retry_schema`, read by :func:`retry_policy`)::

      retry: {max_attempts: 6, base_delay: 0.5, max_total_wait: 120}

* flat, at the top level of the config (read by :func:`flat_retry_policy`):
  ``max_attempts``, ``retry_base_delay`` and ``max_retry_wait``.

A client-side ``rate_limit`` object (``requests``, ``per_seconds``, optional ``burst``
and ``daily``) becomes a :class:`~conn.destination.RateLimit` with
:func:`rate_limit_from_config`.

This module imports neither httpx nor the client at import time, so a destination's
class body can use the schema fragments without making plugin registration heavy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from conn.destination import RateLimit

if TYPE_CHECKING:
    from conn.http.client import HttpClient, RetryPolicy

#: Defaults of the retry settings (those of :class:`~conn.http.client.RetryPolicy`).
DEFAULT_MAX_ATTEMPTS = 6
DEFAULT_BASE_DELAY = 0.5
DEFAULT_MAX_TOTAL_WAIT = 120


def concurrency_schema(default: int, maximum: int) -> dict[str, Any]:
    """Schema of ``concurrency``: batches sent at once, from 1 to ``maximum``."""
    return {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}


def timeout_schema(default: float) -> dict[str, Any]:
    """Schema of ``timeout``: seconds one request may take (positive)."""
    return {"type": "number", "exclusiveMinimum": 0, "default": default}


def retry_schema() -> dict[str, Any]:
    """Schema of the nested ``retry`` object read by :func:`retry_policy`."""
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "max_attempts": {"type": "integer", "minimum": 1,
                             "default": DEFAULT_MAX_ATTEMPTS},
            "base_delay": {"type": "number", "minimum": 0, "default": DEFAULT_BASE_DELAY},
            "max_total_wait": {"type": "number", "minimum": 0,
                               "default": DEFAULT_MAX_TOTAL_WAIT},
        },
    }


def http_settings_schema(*, timeout: float) -> dict[str, dict[str, Any]]:
    """The ``retry`` (nested, see :func:`retry_schema`) and ``timeout`` properties, to
    spread into a destination's ``config_schema["properties"]``."""
    return {"retry": retry_schema(), "timeout": timeout_schema(timeout)}


def retry_policy(settings: Mapping[str, Any] | None) -> RetryPolicy:
    """The :class:`~conn.http.client.RetryPolicy` of a nested ``retry`` object (None or
    missing keys: the defaults)."""
    from conn.http.client import RetryPolicy

    s = settings or {}
    return RetryPolicy(max_attempts=int(s.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
                       base_delay=float(s.get("base_delay", DEFAULT_BASE_DELAY)),
                       max_total_wait=float(s.get("max_total_wait", DEFAULT_MAX_TOTAL_WAIT)))


def flat_retry_policy(config: Mapping[str, Any], *, max_retry_wait: float) -> RetryPolicy:
    """The :class:`~conn.http.client.RetryPolicy` of flat settings: ``max_attempts``,
    ``retry_base_delay`` and ``max_retry_wait`` (whose default the destination gives)."""
    from conn.http.client import RetryPolicy

    return RetryPolicy(max_attempts=int(config.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
                       base_delay=float(config.get("retry_base_delay", DEFAULT_BASE_DELAY)),
                       max_total_wait=float(config.get("max_retry_wait", max_retry_wait)))


def rate_limit_from_config(settings: Mapping[str, Any] | None) -> RateLimit | None:
    """The :class:`~conn.destination.RateLimit` of a ``rate_limit`` object (``requests``,
    ``per_seconds`` default 1, optional ``burst`` and ``daily``); None when not set."""
    if not settings:
        return None
    return RateLimit(int(settings["requests"]), float(settings.get("per_seconds", 1)),
                     settings.get("burst"), settings.get("daily"))


def client_from_config(config: Mapping[str, Any], base_url: str = "", *, timeout: float,
                       retry: RetryPolicy | None = None, **options: Any) -> HttpClient:
    """An :class:`~conn.http.client.HttpClient` for a destination's settings.

    The request timeout is ``config["timeout"]`` (default ``timeout``); retries follow
    ``retry``, by default :func:`retry_policy` of ``config["retry"]``. ``options``
    (``auth``, ``headers``, ``rate_limit``, ``name``, ``max_connections``, test hooks
    such as ``transport``...) go to the client as they are.
    """
    from conn.http.client import HttpClient

    return HttpClient(base_url, timeout=float(config.get("timeout", timeout)),
                      retry=retry if retry is not None else retry_policy(config.get("retry")),
                      **options)
