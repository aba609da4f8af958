"""singer-sdk's standard tap and target test suites against ``conn singer tap`` (duckdb
source) and ``conn singer target`` (files destination).

Runs in a virtual environment holding singer-sdk and pytest (not conn: singer-sdk is not a
dependency of conn). The conn commands run as subprocesses through the command in the
``CONN_CMD`` environment variable (a JSON argv list). The suite classes need a ``Tap`` /
``Target`` class, so two thin proxies drive the CLI: :class:`ConnTap` builds its streams
from ``conn singer tap --discover`` and reads each stream's records from ``conn singer tap
--catalog``; :class:`ConnTarget` pipes the suite's Singer input into ``conn singer
target`` and forwards the state lines it echoes. Everything the suites check about the
messages (schemas, keys, records, states) therefore comes from conn.

Started by ``tests/singer/test_singer_cli.py::test_singer_sdk_standard_suites``; by hand::

    CONN_CMD='[".venv/bin/conn"]' .venvs/singer-sdk/bin/python -m pytest -q \
        tests/singer/singer_sdk_suites/suites.py
"""

from __future__ import annotations

import collections
import copy
import json
import os
import subprocess
import sys
import tempfile
import typing as t
from pathlib import Path

import duckdb
import pytest
from singer_sdk import Stream, Tap, Target
from singer_sdk.sinks import RecordSink
from singer_sdk.testing import SuiteConfig, get_tap_test_class, get_target_test_class

CONN = json.loads(os.environ.get("CONN_CMD", '["conn"]'))
WORK = Path(tempfile.mkdtemp(prefix="conn-sdk-suites-"))


def conn(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    p = subprocess.run([*CONN, *args], input=data, capture_output=True, cwd=WORK,
                       timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"conn {' '.join(args)} exited {p.returncode}: "
                           f"{p.stderr.decode()[-2000:]}")
    return p


def about(kind: str, type_name: str) -> dict[str, t.Any]:
    return json.loads(conn("singer", kind, "--type", type_name, "--about").stdout)


def plugin_config(config: t.Mapping[str, t.Any], settings: dict[str, t.Any]) -> Path:
    """The conn plugin's own keys of an SDK config, written to a file."""
    own = {k: v for k, v in config.items() if k in settings.get("properties", {})}
    fd, name = tempfile.mkstemp(suffix=".json", dir=WORK)
    with os.fdopen(fd, "w") as fh:
        json.dump(own, fh)
    return Path(name)


# --- the tap ---------------------------------------------------------------------------------

TAP_SETTINGS = about("tap", "duckdb")["settings"]


class CliStream(Stream):
    """A stream whose schema and records come from ``conn singer tap``."""

    def __init__(self, tap: Tap, entry: dict[str, t.Any]) -> None:
        self.entry = entry
        super().__init__(tap, schema=entry["schema"], name=entry["stream"])
        self.primary_keys = entry.get("key_properties") or []
        self.replication_key = entry.get("replication_key")

    def get_records(self, context: dict | None) -> t.Iterable[dict[str, t.Any]]:
        catalog = {"streams": [{**self.entry, "selected": True, "metadata": [
            {"breadcrumb": [], "metadata": {"selected": True}}]}]}
        cat = WORK / f"catalog-{self.name}.json"
        cat.write_text(json.dumps(catalog))
        cfg = plugin_config(self.config, TAP_SETTINGS)
        out = conn("singer", "tap", "--type", "duckdb", "--config", str(cfg),
                   "--catalog", str(cat)).stdout
        for line in out.splitlines():
            msg = json.loads(line)
            if msg["type"] == "RECORD" and msg["stream"] == self.name:
                yield msg["record"]


class ConnTap(Tap):
    """``conn singer tap --type duckdb`` seen through singer-sdk."""

    name = "tap-conn-duckdb"
    config_jsonschema: t.ClassVar[dict] = {k: copy.deepcopy(v) for k, v in TAP_SETTINGS.items()
                                           if k != "additionalProperties"}

    def discover_streams(self) -> list[Stream]:
        cfg = plugin_config(self.config, TAP_SETTINGS)
        catalog = json.loads(conn("singer", "tap", "--type", "duckdb", "--config", str(cfg),
                                  "--discover").stdout)
        return [CliStream(self, e) for e in catalog["streams"]]


def make_db() -> str:
    path = WORK / "warehouse.duckdb"
    c = duckdb.connect(str(path))
    c.execute("create table customers(id integer primary key, email varchar not null, "
              "ltv double, active boolean, updated_at timestamp, born date)")
    c.execute("insert into customers select i, 'u' || i || '@x.org', i * 1.5, i % 2 = 0, "
              "timestamp '2024-01-01' + i * interval 1 hour, date '1990-01-01' + i::int "
              "from range(1, 21) t(i)")
    c.execute("create table orders(order_id integer primary key, customer_id integer, "
              "amount double)")
    c.execute("insert into orders select i, i % 5 + 1, i * 10.0 from range(1, 11) t(i)")
    c.close()
    return str(path)


TestConnTap = get_tap_test_class(
    ConnTap,
    config={"path": make_db(), "streams": {"customers": {"cursor": "updated_at"}}},
    suite_config=SuiteConfig(max_records_limit=50),
)


# --- the target ------------------------------------------------------------------------------

TARGET_SETTINGS = about("target", "files")["settings"]


class _UnusedSink(RecordSink):
    def process_record(self, record: dict, context: dict) -> None:  # pragma: no cover
        # Required by singer-sdk's Sink API; records go to `conn singer target` instead.
        raise NotImplementedError("records are piped to conn, not to this sink")


class ConnTarget(Target):
    """``conn singer target --type files`` seen through singer-sdk: the suite's input is
    piped into the command; the state lines it echoes are forwarded to stdout."""

    name = "target-conn-files"
    config_jsonschema: t.ClassVar[dict] = {k: copy.deepcopy(v) for k, v in TARGET_SETTINGS.items()
                                           if k != "additionalProperties"}
    default_sink_class = _UnusedSink

    def process_lines(self, file_input: t.IO[str]) -> collections.Counter[str]:
        data = file_input.read()
        data = data.encode() if isinstance(data, str) else data
        cfg = plugin_config(self.config, TARGET_SETTINGS)
        out = conn("singer", "target", "--type", "files", "--config", str(cfg),
                   "--object", "records", "--mode", "upsert",
                   "--state-dir", str(WORK / "state"), data=data).stdout
        sys.stdout.write(out.decode())
        counter: collections.Counter[str] = collections.Counter()
        counter["lines"] = data.count(b"\n")
        return counter

    def process_endofpipe(self) -> None:
        """conn finished everything (and echoed the state) when the command ended."""


TestConnTarget = get_target_test_class(
    ConnTarget, config={"path": str(WORK / "out"), "format": "jsonl"})


@pytest.fixture(scope="session", autouse=True)
def _show_workdir() -> t.Iterator[None]:
    yield
