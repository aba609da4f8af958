"""The installed package is discovered through its entry point, as conn users get it."""

from __future__ import annotations

from conn.plugins import Registry

from {{ cookiecutter.package_name }}.{{ cookiecutter.kind }} import {{ cookiecutter.class_name }}


def test_entry_point_registers_the_type() -> None:
    registry = Registry(autoload=True)
    found = registry.{{ cookiecutter.kind }}_class("{{ cookiecutter.type_name }}")
    assert found is {{ cookiecutter.class_name }}
