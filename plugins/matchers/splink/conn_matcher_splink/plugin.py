"""Entry point module of ``conn-matcher-splink``: registers the ``splink`` matcher.

Imports nothing heavy: Splink is imported when a profile set uses the matcher.
"""

from __future__ import annotations

from collections.abc import Callable

from conn import hookimpl

CONN_PLUGIN_API = "1.0"


@hookimpl
def register_matchers(register: Callable[..., None]) -> None:
    from conn_matcher_splink.matcher import SplinkMatcher

    register("splink", SplinkMatcher)
