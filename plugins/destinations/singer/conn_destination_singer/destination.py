"""The ``singer`` destination: feeds a Singer target SCHEMA, RECORD and STATE messages and
acknowledges rows only once the target has echoed the STATE that follows them."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conn import secrets
from conn.destination import Capabilities, Destination, ObjectInfo, WriteRequest, WriteResult
from conn.errors import CheckFailed, ConfigError, ConnError
from conn.singer.process import connector_name, resolve_command, tail, write_private_json
from conn.singer.protocol import DELETED_AT, loads, record_lines, schema_message, state_message
from conn.singer.schema import arrow_to_json_schema


class TargetError(ConnError):
    """A Singer target failed or did not confirm a batch (its rows stay pending)."""


class SingerDestination(Destination):
    """Writes to any Singer target.

    Each :meth:`write_batch` runs the target once: a SCHEMA message (from the batch's Arrow
    schema, ``key_properties = [match_key]``), one RECORD per row, then a STATE message
    carrying a unique marker; stdin is closed and the target drains. Rows are acknowledged
    only if the target exits 0 **and** echoes the marker state on stdout (singer-sdk targets
    echo state after draining, i.e. after the rows are written). Otherwise every row stays
    pending with the target's stderr tail as the error. Deletes are RECORDs with
    ``_sdc_deleted_at`` set (Singer's soft-delete convention).
    """

    name = "singer"
    #: What says where it writes (compared between runs; see Destination.target_identity).
    identity_keys = ("command", "config")
    description = "Any Singer target, run as a subprocess (e.g. from its own virtual environment)."
    config_schema = {
        "type": "object",
        "required": ["command", "objects"],
        "additionalProperties": False,
        "properties": {
            "command": {
                "description": "The target executable: a path, or an argv list.",
                "oneOf": [{"type": "string", "minLength": 1},
                          {"type": "array", "items": {"type": "string"}, "minItems": 1}],
            },
            "config": {"type": "object",
                       "description": "The target's config, written to a private temp file "
                                      "for --config. Values under keys such as password, "
                                      "token or secret are treated as secrets."},
            "secret_fields": {"type": "array", "items": {"type": "string"}},
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "objects": {
                "type": "array", "minItems": 1,
                "description": "Singer streams conn may write, with their identifiers.",
                "items": {
                    "type": "object", "required": ["name", "identifiers"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "identifiers": {"type": "array", "items": {"type": "string"},
                                        "minItems": 1},
                        "fields": {"type": "object",
                                   "description": "JSON Schema properties of the stream "
                                                  "(default: any field)."},
                        "batch_size": {"type": "integer", "minimum": 1},
                    },
                },
            },
            "batch_size": {"type": "integer", "minimum": 1, "default": 10000,
                           "description": "Rows per target run (one process per batch)."},
            "timeout": {"type": "number", "minimum": 1, "default": 3600},
            "delete_config": {
                "type": "object", "default": {"add_record_metadata": True},
                "description": "Merged into the target config for delete batches; singer-sdk "
                               "targets keep `_sdc_deleted_at` only with add_record_metadata.",
            },
        },
    }

    def __init__(self, config: Mapping[str, Any] | None = None, *, instance: str = "",
                 project_dir: str | Path | None = None) -> None:
        super().__init__(config, instance=instance, project_dir=project_dir)
        if "command" not in self.config:
            raise ConfigError("singer destination: missing required setting 'command'",
                              path="config.command")
        self.argv = resolve_command(self.config["command"])
        self.target_name = connector_name(self.argv)
        target_config = self.config.get("config") or {}
        secrets.register_config_secrets(target_config, None)
        for dotted in self.config.get("secret_fields") or ():
            node: Any = target_config
            for part in dotted.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                secrets.register(str(node))
        secrets.register(*(self.config.get("env") or {}).values())

    def check(self) -> None:
        exe = self.argv[0]
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)) and not shutil.which(exe):
            raise CheckFailed(f"singer target {self.target_name!r}: executable {exe!r} not "
                              "found (install the target, e.g. in its own virtualenv)")

    def objects(self) -> list[ObjectInfo]:
        out = []
        default_size = int(self.config.get("batch_size", 10000))
        for spec in self.config.get("objects") or ():
            idents = tuple(spec["identifiers"])
            props = dict(spec.get("fields") or {})
            for ident in idents:
                props.setdefault(ident, {})
            caps = Capabilities(batch_size=int(spec.get("batch_size", default_size)),
                                modes=frozenset({"upsert", "insert", "append", "mirror"}),
                                supports_delete=True)
            fields: dict[str, Any] = {"type": "object", "properties": props}
            if not spec.get("fields"):
                # No declared fields: the stream takes every mapped field (a passthrough
                # mapping sends every column), not just its identifiers.
                fields["additionalProperties"] = True
            out.append(ObjectInfo(spec["name"], fields, idents, caps,
                                  description=f"Singer stream {spec['name']!r} of target "
                                              f"{self.target_name!r}"))
        return out

    def messages(self, request: WriteRequest, marker: Any) -> bytes:
        """The Singer input for one batch: SCHEMA, RECORDs, then the marker STATE."""
        stream = request.object.name
        schema = arrow_to_json_schema(request.records.schema)
        extra = None
        if request.operation == "delete":
            schema["properties"][DELETED_AT] = {"type": ["string", "null"],
                                               "format": "date-time"}
            now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
            extra = {DELETED_AT: now}
        return b"".join((schema_message(stream, schema, [request.match_key]),
                         record_lines(stream, request.records, extra),
                         state_message(marker)))

    def describe_requests(self, request: WriteRequest) -> list[dict[str, Any]]:
        lines = self.messages(request, {"conn": {"marker": "<marker>"}}).splitlines()
        return [{"target": self.target_name, "operation": request.operation,
                 "object": request.object.name,
                 "messages": [loads(x) for x in lines]}]

    def write_batch(self, request: WriteRequest) -> WriteResult:
        n = len(request)
        token = uuid.uuid4().hex
        marker = {"conn": {"sync": request.sync, "object": request.object.name,
                           "marker": token}}
        payload = self.messages(request, marker)
        env = dict(os.environ)
        env.update(self.config.get("env") or {})
        target_config = dict(self.config.get("config") or {})
        if request.operation == "delete":
            for k, v in (self.config.get("delete_config", {"add_record_metadata": True})
                         or {}).items():
                target_config.setdefault(k, v)
        with tempfile.TemporaryDirectory(prefix="conn-singer-") as tmp:
            cfg = write_private_json(Path(tmp, "config.json"), target_config)
            out_path, err_path = Path(tmp, "stdout"), Path(tmp, "stderr.log")
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                try:
                    proc = subprocess.Popen([*self.argv, "--config", cfg],
                                            stdin=subprocess.PIPE, stdout=out, stderr=err,
                                            env=env)
                except OSError as exc:
                    return WriteResult(pending=list(range(n)), error=TargetError(
                        f"singer target {self.target_name!r}: cannot start: {exc}"))
                try:
                    proc.communicate(payload, timeout=float(self.config.get("timeout", 3600)))
                except (BrokenPipeError, ConnectionResetError):
                    proc.wait()
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            echoed = _echoed(out_path.read_bytes(), token)
            if proc.returncode == 0 and echoed:
                return WriteResult.ok()
            if proc.returncode != 0:
                why = f"exited with code {proc.returncode}"
            else:
                why = "exited without echoing the batch's STATE marker (nothing confirmed)"
            error = TargetError(secrets.redact(
                f"singer target {self.target_name!r}, stream {request.object.name!r}: {why}; "
                f"{n} row(s) left pending; stderr ends with:\n{tail(err_path)}"))
            return WriteResult(pending=list(range(n)), error=error)


def _echoed(stdout: bytes, token: str) -> bool:
    """Whether a state line on the target's stdout carries our marker (bare value, as
    singer-sdk and singer-python targets print it, or a STATE envelope)."""
    needle = token.encode()
    for line in stdout.splitlines():
        line = line.strip()
        if needle not in line:
            continue
        try:
            value = loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and value.get("type") == "STATE":
            value = value.get("value")
        conn = value.get("conn") if isinstance(value, dict) else None
        if isinstance(conn, dict) and conn.get("marker") == token:
            return True
    return False
