"""The ``{{ cookiecutter.type_name }}`` destination: writes each object as a JSON Lines
change log, ``<path>/<object>.jsonl``, one line per operation.

Replace the file writes with your database or file format; keep the contract:
``write_batch`` returns only once the rows are durable (here: flushed and fsynced), so
what conn records as delivered survives a crash.

Records that do not match the object's JSON Schema are rejected with the validation
message, the others are written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from conn.destination import (
    Capabilities,
    Destination,
    ObjectInfo,
    Rejection,
    WriteRequest,
    WriteResult,
    packaged_object_names,
)
from conn.errors import CheckFailed

#: Rows per write_batch call (a database would use its bulk-insert sweet spot).
BATCH_SIZE = 5_000
#: Column holding the operation in the change log.
OP_FIELD = "_op"


class {{ cookiecutter.class_name }}(Destination):
    """Appends every operation to ``<path>/<object>.jsonl`` (durable on return)."""

    name: ClassVar[str] = "{{ cookiecutter.type_name }}"
    description: ClassVar[str] = "{{ cookiecutter.description }}"
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["path"],
        "properties": {
            "path": {"type": "string", "minLength": 1,
                     "description": "output folder, relative to the folder of conn.yml"},
            "batch_size": {"type": "integer", "minimum": 1, "default": BATCH_SIZE},
            "fsync": {"type": "boolean", "default": True,
                      "description": "fsync each batch before acknowledging it"},
        },
    }

    @property
    def root(self) -> Path:
        """The output folder."""
        return self.resolve_path(str(self.config["path"]))

    def file(self, object_name: str) -> Path:
        """The change log of ``object_name``."""
        return self.root / f"{object_name}.jsonl"

    def objects(self) -> list[ObjectInfo]:
        """One object per ``objects/<name>.schema.json`` of this package (fields,
        ``x-identifiers``, ``x-personal``), all with the same capabilities."""
        # Erasure (``conn forget``): this template declares none, so conn forget sends
        # ``delete``, which here appends a delete line and keeps the person's earlier lines
        # and key in the file: not an erasure. To declare one, pass
        # ``erasure="<what it does>"`` and handle ``request.operation == "erase"`` in
        # write_batch by rewriting the file without the rows of those keys (to a
        # temporary file, fsynced, then os.replace), appending nothing, and acknowledging
        # keys the file does not hold (conn's files destination does this).
        caps = Capabilities(batch_size=int(self.config.get("batch_size", BATCH_SIZE)),
                            modes=frozenset({"upsert", "insert", "update", "mirror", "append"}),
                            supports_delete=True)
        return [ObjectInfo.from_package(__package__, name, caps)
                for name in packaged_object_names(__package__)]

    def check(self) -> None:
        probe = self.root / f".conn-check-{os.getpid()}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise CheckFailed(f"destination {self.instance!r}: cannot write to "
                              f"{self.root}: {exc.strerror or exc}") from None

    def write_batch(self, request: WriteRequest) -> WriteResult:
        if request.dry_run:
            return WriteResult.ok()
        import jsonschema

        rows = request.to_pylist()
        rejected: list[Rejection] = []
        lines: list[str] = []
        if request.operation == "delete":
            lines = [_line({request.match_key: r[request.match_key], OP_FIELD: "delete"})
                     for r in rows]
        else:
            schema = request.object.fields
            validator = jsonschema.Draft202012Validator(
                schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
            for i, row in enumerate(rows):
                error = jsonschema.exceptions.best_match(validator.iter_errors(row))
                if error is not None:
                    where = ".".join(str(p) for p in error.absolute_path) or "record"
                    rejected.append(Rejection(i, f"{where}: {error.message}", retryable=False))
                    continue
                lines.append(_line({**row, OP_FIELD: request.operation}))
        if lines:
            path = self.file(request.object.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write("".join(lines))
                f.flush()
                if self.config.get("fsync", True):
                    os.fsync(f.fileno())
        return WriteResult(rejected=rejected)

    def current(self, object_name: str) -> list[dict[str, Any]]:
        """The object's current records: the change log replayed (latest row per key,
        deleted keys removed). For tests and small objects."""
        idents = self.object(object_name).identifiers
        state: dict[Any, dict[str, Any]] = {}
        for row in _read(self.file(object_name)):
            if row.pop(OP_FIELD, "upsert") == "delete":
                field = next(i for i in idents if i in row)
                state = {k: v for k, v in state.items() if v.get(field) != row[field]}
            else:
                state[row.get(idents[0])] = row
        return list(state.values())


def _line(row: Mapping[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, default=str) + "\n"


def _read(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
