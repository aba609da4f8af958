"""conn's own plugin: the built-in transforms and state backends, registered through the
same hooks as third-party plugins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conn.hookspecs import hookimpl


@hookimpl
def register_state_backends(register: Callable[..., None]) -> None:
    def duckdb_store(url: str | None, project_dir: Any) -> Any:
        from conn.state.backends.duckdb.store import DuckDBStateStore

        return DuckDBStateStore.open(url, project_dir)

    def postgres_store(url: str | None, project_dir: Any) -> Any:
        from conn.state.backends.postgres import PostgresStateStore

        return PostgresStateStore.open(url, project_dir)

    def memory_store(url: str | None, project_dir: Any) -> Any:
        from conn.state.backends.memory import MemoryStateStore

        return MemoryStateStore()

    register("duckdb", duckdb_store)
    register("postgres", postgres_store)
    register("memory", memory_store)


@hookimpl
def register_sources(register: Callable[..., None]) -> None:
    # Light: the module imports DuckDB and scipy only when it reads or builds.
    from conn.profiles.source import ProfilesSource

    register(ProfilesSource)


@hookimpl
def register_transforms(register: Callable[..., None]) -> None:
    from conn.mapping.transforms import BUILTIN_TRANSFORMS

    for name, fn in BUILTIN_TRANSFORMS.items():
        register(name, fn)
