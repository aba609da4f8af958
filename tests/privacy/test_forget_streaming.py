"""docs/privacy.md: after ``conn forget``, the consent gate withholds the person on every
path; streaming syncs (``conn sync --follow``) go through the same gate. Random change
feeds mixing a forgotten person (under their key, or their e-mail under a new key) with
others: no change of the forgotten person reaches the destination, every other
consented change does."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pyarrow as pa
from conn.config import load_project
from conn.runtime.forget import forget
from conn.testing.sync import SyncHarness
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fakes
from tests.conftest import examples

SCHEMA = pa.schema([("id", pa.string()), ("email", pa.string()), ("name", pa.string())])
FORGOTTEN = "u2@example.com"
_counter = itertools.count()


@st.composite
def feeds(draw: Any) -> list[dict[str, Any]]:
    """Changes to people 0-4; person 2's e-mail also turns up under new keys 7-8, in
    another case and with spaces (the list compares e-mail addresses normalised)."""
    out = []
    for k in range(draw(st.integers(1, 25))):
        i = draw(st.integers(0, 8))
        email = ("  U2@Example.COM " if i in (7, 8) and draw(st.booleans())
                 else FORGOTTEN if i in (7, 8) else f"u{i}@example.com")
        out.append({"id": str(i), "email": email, "name": f"c{k}",
                    "op": draw(st.sampled_from(("insert", "update", "update", "delete")))})
    return out


@settings(max_examples=examples(15), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(feeds())
def test_a_forgotten_person_never_returns_through_a_streaming_sync(
        tmp_path: Path, changes: list[dict[str, Any]]) -> None:
    fakes.reset()
    folder = tmp_path / f"f{next(_counter)}"
    sync = {"object": "contacts", "match_key": "email", "mode": "upsert",
            "mapping": {"id": "id", "email": "email", "name": "name"}}
    with SyncHarness(folder) as h:
        h.destination("crm", fakes.RecordingDestination, {})
        h.stream("people", [{"id": str(i), "email": f"u{i}@example.com", "name": "first"}
                            for i in range(5)], primary_key="id", schema=SCHEMA)
        assert h.sync("crm", "people", **sync).status == "ok"
        project = load_project(folder / "conn.yml", registry=h.registry)
        receipt = forget(project, h.registry, h._store, [FORGOTTEN])
        assert receipt["suppressed"] >= 2  # the e-mail and the key "2"
        fakes.reset()

        h.stream("people", pa.Table.from_pylist([], schema=SCHEMA), primary_key="id")
        f = h.follow("crm", "people", max_latency_ms=5, **sync)
        h.changes("people", [{k: c[k] for k in ("id", "email", "name")} for c in changes],
                  [c["op"] for c in changes])
        assert f.wait_rows(len(changes), timeout=30)
        rep = f.stop()
    assert rep.status == "ok", rep.error
    sent = [r for _, op, recs in fakes.RECEIVED if op != "delete" for r in recs]
    assert not [r for r in sent if r["id"] in ("2", "7", "8")], sent
    last: dict[str, dict[str, Any]] = {}
    for c in changes:
        last[c["id"]] = c
    expected = {i for i, c in last.items() if c["op"] != "delete" and i not in ("2", "7", "8")}
    assert {r["id"] for r in sent} >= expected
