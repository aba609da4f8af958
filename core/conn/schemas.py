"""Access to the JSON Schemas shipped with conn (``schemas/`` in the repository)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any


@functools.cache
def schema_dir() -> Path:
    """The folder holding conn's JSON Schemas: inside the wheel, or the repository's."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "schemas", here.parent.parent / "schemas"):
        if (candidate / "conn.schema.json").is_file():
            return candidate
    raise FileNotFoundError("conn's schemas/ folder is missing from this installation")


@functools.cache
def load(name: str) -> dict[str, Any]:
    """Load ``schemas/<name>`` (e.g. ``conn.schema.json``)."""
    return json.loads((schema_dir() / name).read_text())


@functools.cache
def registry() -> Any:
    """A ``referencing`` registry resolving ``$ref``s between conn's schemas by file name
    (built once per process; registries are immutable)."""
    from referencing import Registry, Resource

    resources = []
    for path in schema_dir().rglob("*.json"):
        rel = path.relative_to(schema_dir()).as_posix()
        resources.append((rel, Resource.from_contents(json.loads(path.read_text()))))
    return Registry().with_resources(resources)
