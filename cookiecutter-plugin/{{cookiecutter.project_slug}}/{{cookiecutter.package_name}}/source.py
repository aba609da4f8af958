"""The ``{{ cookiecutter.type_name }}`` source: streams a JSON Lines or CSV file as Arrow
record batches, optionally incrementally by a cursor column.

Replace the file reading with your system's API or driver; keep the contract: yield
batches of at most ``batch_rows`` rows without loading the whole stream, and yield a
:class:`~conn.source.SourceState` bookmark after the batches it covers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from conn.errors import CheckFailed, ConfigError
from conn.source import Source, SourceState, StreamInfo

if TYPE_CHECKING:
    import pyarrow as pa

#: Bytes per block the Arrow readers parse at once (bounded memory).
BLOCK_SIZE = 1 << 20


class {{ cookiecutter.class_name }}(Source):
    """One stream per configured file: ``path`` (``.jsonl``/``.ndjson`` or ``.csv``)."""

    name: ClassVar[str] = "{{ cookiecutter.type_name }}"
    description: ClassVar[str] = "{{ cookiecutter.description }}"
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["path"],
        "properties": {
            "path": {"type": "string", "minLength": 1,
                     "description": "the file, relative to the folder of conn.yml"},
            "stream": {"type": "string", "minLength": 1,
                       "description": "stream name (default: the file name without suffix)"},
            "format": {"enum": ["jsonl", "csv"],
                       "description": "default: from the file suffix"},
            "primary_key": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                            "default": ["id"]},
            "cursor": {"type": "string", "minLength": 1,
                       "description": "column that grows with each change: only rows "
                                      "above the last run's maximum are read again"},
        },
    }

    # -- configuration --

    @property
    def path(self) -> Path:
        """The file to read."""
        return self.resolve_path(str(self.config["path"]))

    @property
    def format(self) -> str:
        """``jsonl`` or ``csv``."""
        fmt = self.config.get("format")
        if fmt:
            return str(fmt)
        return "csv" if self.path.suffix.lower() == ".csv" else "jsonl"

    def _reader(self) -> Any:
        """A streaming Arrow reader over the file (batches of about BLOCK_SIZE bytes)."""
        if self.format == "csv":
            import pyarrow.csv as pcsv

            return pcsv.open_csv(self.path, read_options=pcsv.ReadOptions(block_size=BLOCK_SIZE))
        import pyarrow.json as pjson

        return pjson.open_json(self.path, read_options=pjson.ReadOptions(block_size=BLOCK_SIZE))

    # -- duties --

    def check(self) -> None:
        if not self.path.is_file():
            raise CheckFailed(f"source {self.instance!r}: file {self.path} does not exist")
        try:
            self._reader().schema  # noqa: B018 - parses the first block
        except Exception as exc:  # pyarrow raises several types for unreadable files
            raise CheckFailed(f"source {self.instance!r}: cannot read {self.path} as "
                              f"{self.format}: {exc}") from None

    def discover(self) -> list[StreamInfo]:
        schema = self._reader().schema
        key = tuple(self.config.get("primary_key") or ("id",))
        missing = [k for k in key if k not in schema.names]
        if missing:
            raise ConfigError(f"source {self.instance!r}: primary key column(s) {missing} "
                              f"not in {self.path.name} (columns: {schema.names})",
                              path="config.primary_key")
        cursor = self.config.get("cursor")
        if cursor is not None and cursor not in schema.names:
            raise ConfigError(f"source {self.instance!r}: cursor column {cursor!r} not in "
                              f"{self.path.name}", path="config.cursor")
        name = self.config.get("stream") or self.path.name.split(".")[0]
        return [StreamInfo(name, schema, key, cursor=cursor)]

    def read_batches(self, stream: StreamInfo, state: Any | None, batch_rows: int
                     ) -> Iterator[pa.RecordBatch | SourceState]:
        import pyarrow as pa
        import pyarrow.compute as pc

        cursor = stream.cursor
        since = state.get("cursor") if isinstance(state, dict) else None
        highest: Any = None
        for block in self._reader():
            if cursor is not None:
                column_type = block.schema.field(cursor).type
                if since is not None:
                    bound = pa.scalar(since).cast(column_type)
                    block = block.filter(pc.greater(block.column(cursor), bound))
                if block.num_rows:
                    top = pc.max(block.column(cursor)).as_py()
                    highest = top if highest is None or top > highest else highest
            for offset in range(0, block.num_rows, batch_rows):
                yield block.slice(offset, batch_rows)
        if cursor is not None and (highest is not None or since is not None):
            # The file is not sorted by the cursor: the bookmark comes once, at the end.
            value = since if highest is None else json.loads(json.dumps(highest, default=str))
            yield SourceState({"cursor": value})
