"""What sources and destinations share: metadata as class attributes, config validation."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from conn.errors import ConfigError


class Connector:
    """Common base of :class:`~conn.source.Source` and
    :class:`~conn.destination.Destination`.

    Subclasses set ``name`` (the ``type`` in conn.yml) and ``config_schema`` (a JSON Schema
    for their ``config:`` block; mark secret fields with ``"secret": true``). The runtime
    validates the config against the schema before the constructor runs.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    def __init__(self, config: Mapping[str, Any] | None = None, *, instance: str = "",
                 project_dir: str | Path | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})
        self.instance = instance or self.name
        #: The folder holding conn.yml; relative paths in config are relative to it.
        self.project_dir = Path(project_dir) if project_dir else None

    @typing.final
    @classmethod
    def create(cls, config: Mapping[str, Any] | None, *, instance: str = "",
               project_dir: str | Path | None = None) -> typing.Self:
        """How the runtime instantiates a connector: the constructor gets the config and
        instance name (subclasses may override ``__init__`` with just those), then the
        project folder is set. Resolve relative paths lazily, with :meth:`resolve_path`."""
        obj = cls(config, instance=instance)
        obj.project_dir = Path(project_dir) if project_dir else None
        return obj

    @typing.final
    def resolve_path(self, value: str | Path) -> Path:
        """A config path made absolute against the project folder (or the working
        directory when the connector runs outside a project)."""
        p = Path(value).expanduser()
        if p.is_absolute():
            return p
        return (self.project_dir or Path.cwd()) / p

    @typing.final
    @classmethod
    def validate_config(cls, config: Any, *, file: str | None = None, path: str = "config") -> None:
        """Raise :class:`ConfigError` naming every bad value of ``config`` at once."""
        from conn.config.validate import schema_errors

        errors = schema_errors(config, cls.config_schema, file=file, path=path)
        if errors:
            if len(errors) == 1:
                raise errors[0]
            from conn.errors import ConfigErrors

            raise ConfigErrors(errors)

    def close(self) -> None:
        """Release connections and files; called once when a run ends."""

    def __enter__(self) -> typing.Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # Never show config: it may hold secrets.
        return f"<{type(self).__name__} {self.instance!r}>"


def require(config: Mapping[str, Any], key: str, plugin: str) -> Any:
    """Fetch a required config key with a clear error (for plugins without a schema)."""
    if key not in config:
        raise ConfigError(f"{plugin}: missing required setting {key!r}", path=f"config.{key}")
    return config[key]
