"""Property: after ``conn forget``, no path delivers the person again (batch upsert and
mirror, insert, append, ``--full-resync``, dry-run previews, a second stream holding the
same e-mail address under another key and spelling), and no file under the project
folder holds their identifiers in clear, the DuckDB state files byte for byte.

Real command-line runs on a DuckDB warehouse, to a webhook (a loopback FaultServer keyed
on e-mail) and to files; the warehouse and the files' output live outside the project
folder (they are the user's source and destination, not files conn keeps).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from conn.testing.http import FaultServer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.privacy.conftest import clear_hits, make_project, person

N = 8
AFTER = st.lists(st.sampled_from(["sync", "full-resync", "dry-run", "preview"]),
                 min_size=1, max_size=3)


def _delivered(server: FaultServer, email: str) -> int:
    """Records carrying ``email`` the webhook received with an operation other than
    delete."""
    n = 0
    for req in server.requests:
        body = req.json if req.body else None
        if not isinstance(body, dict) or body.get("operation") in ("delete", "erase"):
            continue
        n += sum(str(r.get("email", "")).strip().lower() == email
                 for r in body.get("records", []))
    return n


def _file_lines(out: Path, needle: str) -> int:
    """Change-log lines (not deletes) in the files destination mentioning ``needle``."""
    n = 0
    for f in out.rglob("*.jsonl"):
        for line in f.read_text().splitlines():
            if needle.lower() in line.lower() and '"delete"' not in line:
                n += 1
    return n


@pytest.mark.slow
@pytest.mark.usefixtures("real_registry")
@settings(max_examples=6, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(who=st.integers(0, N - 1), by=st.sampled_from(["key", "email", "email-variant"]),
       mode=st.sampled_from(["upsert", "mirror"]), after=AFTER)
def test_a_forgotten_person_is_never_delivered_again(capsys, monkeypatch, who, by, mode,
                                                     after):
    p = person(who)
    email = p["email"].lower()
    subject = {"key": str(p["id"]), "email": p["email"],
               "email-variant": f"  {p['email'].upper()} "}[by]
    with tempfile.TemporaryDirectory() as tmp, FaultServer(id_field="email") as server:
        proj = make_project(Path(tmp), server, n=N, mode=mode)
        proj.sync_all(capsys, monkeypatch)
        sent = 2 if who == 3 else 1  # person 3 is also a lead
        assert _delivered(server, email) == sent
        code, out = proj.conn(capsys, monkeypatch, "forget", subject, "--json")
        assert code == 0, out
        receipt = json.loads(out)
        assert receipt["status"] == "complete"
        assert {t["sync"] for t in receipt["targets"]} == {
            "people_hook", "people_files", "events_files"} | (
            {"leads_hook"} if who == 3 else set())
        assert p["email"] not in server.store  # the webhook was asked to delete
        key_line = f'"id": {p["id"]}'
        before_files = _file_lines(proj.out, email), _file_lines(proj.out, key_line)
        for step in after:
            if step == "sync":
                reports = proj.sync_all(capsys, monkeypatch)
            elif step == "full-resync":
                reports = proj.sync_all(capsys, monkeypatch, "--full-resync")
            else:
                args = (["sync", "warehouse", "hook", "--dry-run", "--preview", "100"]
                        if step == "dry-run" else ["preview", "people_hook", "-n", "100"])
                code, out = proj.conn(capsys, monkeypatch, *args)
                assert code == 0, out
                assert email not in out.lower() and f'"id": {p["id"]}' not in out
                continue
            withheld = {r["name"]: r["consent"]["withheld_by_reason"]["suppressed"]
                        for r in reports}
            assert withheld["people_hook"] == 1 or step == "sync"  # unchanged otherwise
            if who == 3:
                assert withheld["leads_hook"] == 1  # the second stream's spelling
        assert _delivered(server, email) == sent  # only the deliveries before forget
        assert (_file_lines(proj.out, email), _file_lines(proj.out, key_line)) == before_files
        assert clear_hits(proj.dir, [email, str(p["id"]), p["email"]]) == []
