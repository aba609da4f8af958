"""conn's conformance suite for the {{ cookiecutter.type_name }} destination."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conn.testing.conformance import SuiteContext, destination_suite
from conn.testing.sync import SyncHarness

from {{ cookiecutter.package_name }}.destination import {{ cookiecutter.class_name }}

SAMPLES = [
    {"id": "c-1", "email": "ana@example.com", "first_name": "Ana", "last_name": "Müller",
     "lifetime_value": 1234.5, "plan": "pro"},
    {"id": "c-2", "email": "bo@example.com", "first_name": "Bo", "last_name": "Chen",
     "lifetime_value": 0.0, "plan": "free"},
]


def read_back(ctx: SuiteContext, dest: {{ cookiecutter.class_name }}, obj: str
              ) -> list[dict[str, Any]]:
    """The records the destination holds now."""
    return dest.current(obj)


def unwritable(ctx: SuiteContext) -> dict[str, Any]:
    """A config whose folder cannot be created: its parent is a regular file."""
    blocker = ctx.tmp_path / "blocker"
    blocker.write_text("a file, not a folder", encoding="utf-8")
    return {"path": str(blocker / "out")}


Test{{ cookiecutter.class_name }}Conformance = destination_suite(
    {{ cookiecutter.class_name }},
    config=lambda ctx: {"path": str(ctx.tmp_path / "out"), "batch_size": 50},
    object="contacts",
    sample_records=SAMPLES,
    rejected_record={**SAMPLES[0], "id": "c-bad", "email": "not-an-email"},
    bad_config={"path": "", "batch_size": 0},
    failing_config=unwritable,
    read_back=read_back,
)


def test_a_mirror_sync_deletes_what_left_the_source(tmp_path: Path) -> None:
    """Two whole syncs, as ``conn sync`` runs them (:class:`conn.testing.sync.SyncHarness`
    keeps the state between them): the second writes nothing unchanged and deletes the
    record that left the source."""
    sync = {"object": "contacts", "match_key": "id", "mode": "mirror",
            "mapping": {name: name for name in SAMPLES[0]}}
    out = tmp_path / "out"
    with SyncHarness(tmp_path / "project") as h:
        h.destination("files", {{ cookiecutter.class_name }}, {"path": str(out)})
        h.stream("people", SAMPLES, primary_key="id")
        first = h.sync("files", "people", **sync)
        assert (first.status, first.inserted) == ("ok", 2), first.error
        h.stream("people", SAMPLES[:1], primary_key="id")
        second = h.sync("files", "people", **sync)
        assert (second.status, second.deleted, second.unchanged) == ("ok", 1, 1), second.error
    with {{ cookiecutter.class_name }}({"path": str(out)}) as dest:
        assert [r["id"] for r in dest.current("contacts")] == [SAMPLES[0]["id"]]
