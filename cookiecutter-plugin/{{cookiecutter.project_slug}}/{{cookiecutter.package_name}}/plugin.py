"""Entry point module of ``{{ cookiecutter.project_slug }}``: registers the
``{{ cookiecutter.type_name }}`` {{ cookiecutter.kind }} type.

conn imports this module when a project uses this type, so it imports nothing heavy:
the connector class (and pyarrow{% if cookiecutter.__style == 'http' %}, httpx{% endif %}) is imported inside the hook.
"""

from __future__ import annotations

from collections.abc import Callable

from conn import hookimpl

#: The conn plugin API this plugin was written for (checked when conn loads it).
CONN_PLUGIN_API = "1.0"


@hookimpl
def register_{{ cookiecutter.kind }}s(register: Callable[..., None]) -> None:
    """Register :class:`{{ cookiecutter.class_name }}`."""
    from {{ cookiecutter.package_name }}.{{ cookiecutter.kind }} import {{ cookiecutter.class_name }}

    register({{ cookiecutter.class_name }})
