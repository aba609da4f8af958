"""The plugin's own tests. To start: the installed package is discovered through its
entry point, as conn users get it.{% if cookiecutter.__style == 'http' %} A check against an API that does not answer
fails at once.{% endif %}
"""

from __future__ import annotations

from conn.plugins import Registry

from {{ cookiecutter.package_name }}.{{ cookiecutter.kind }} import {{ cookiecutter.class_name }}


def test_entry_point_registers_the_type() -> None:
    registry = Registry(autoload=True)
    found = registry.{{ cookiecutter.kind }}_class("{{ cookiecutter.type_name }}")
    assert found is {{ cookiecutter.class_name }}
{%- if cookiecutter.__style == 'http' %}


def test_check_against_an_api_that_does_not_answer_fails_at_once() -> None:
    """A check makes one attempt (the write path's retries would take seconds) and its
    message is about the API, not about rows."""
    import socket
    import time

    import pytest
    from conn.errors import CheckFailed

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    config = {"base_url": url{% if cookiecutter.__auth == 'bearer' %}, "token": "t0ken-for-tests"{% elif cookiecutter.__auth == 'basic' %}, "username": "u", "password": "pa55word"{% elif cookiecutter.__auth == 'oauth2' %}, "token_url": url + "/oauth/token",
              "client_id": "c", "client_secret": "s3cret", "refresh_token": "r3fresh"{% endif %}}
    started = time.monotonic()
    with {{ cookiecutter.class_name }}(config, instance="acme") as dest, \
            pytest.raises(CheckFailed) as err:
        dest.check()
    assert time.monotonic() - started < 2
    assert "does not answer" in str(err.value) and "pending" not in str(err.value)
{%- endif %}
