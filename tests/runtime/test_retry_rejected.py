"""``conn retry SYNC`` (docs/cli.md, docs/ui.md): only the rows currently rejected for the
sync are sent again, through the same consent gate, mapping and planner as ``conn sync``;
other changes of the source wait for the next run; a person who withdrew consent is not
sent; the run is recorded, marked ``rejected_only``; mirror mode sends no deletes."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conn.destination import Rejection, WriteRequest, WriteResult
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fakes
from tests.cli_in_process import run_cli
from tests.conftest import examples
from tests.runtime.test_runtime import PROJECT, people

SYNC = "people_to_crm"


class Vendor:
    """The destination's side (the recorder, through its write hook): the keys of every
    row sent with their record, and the keys it refuses while ``refuse`` holds them."""

    def __init__(self) -> None:
        self.refuse: set[int] = set()
        self.sent: list[tuple[int, dict]] = []

    def __call__(self, request: WriteRequest) -> WriteResult:
        assert request.basis is not None
        keys = [int(k) for k in request.basis.column("key").to_pylist()]
        rows = request.to_pylist()
        self.sent += list(zip(keys, rows, strict=True))
        return WriteResult(rejected=[Rejection(i, f"REFUSED: {k}") for i, k in enumerate(keys)
                                     if k in self.refuse])

    def take(self) -> dict[int, dict]:
        out = dict(self.sent)
        assert len(out) == len(self.sent), "a row was sent twice"
        self.sent = []
        return out


@contextmanager
def project_dir(mode: str = "upsert") -> Iterator[Path]:
    old = os.getcwd()
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "conn.yml").write_text(PROJECT.replace("MODE", mode))
        os.chdir(d)
        try:
            yield Path(d)
        finally:
            os.chdir(old)


def roster(n: int, changed: set[int] = frozenset(), withdrawn: set[int] = frozenset()
           ) -> list[tuple[int, str, str, bool]]:
    return [(i, f"p{i}@example.com", f"Person {i}" + (" (changed)" if i in changed else ""),
             i not in withdrawn) for i in range(1, n + 1)]


def cli_json(monkeypatch, capsys, *args: str) -> tuple[int, dict]:
    code, out, err = run_cli(monkeypatch, capsys, *args, "--json")
    assert out, err
    return code, json.loads(out)


def rejected_keys(monkeypatch, capsys) -> set[int]:
    return {r["key"] for r in cli_json(monkeypatch, capsys, "rejected", SYNC)[1]["rejected"]}


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, set[int], set[int], set[int]]:
    n = draw(st.integers(3, 40))
    ids = st.sampled_from(range(1, n + 1))
    refused = draw(st.sets(ids, min_size=1, max_size=n))
    changed = draw(st.sets(ids, max_size=n))
    withdrawn = draw(st.sets(st.sampled_from(sorted(refused))))
    return n, refused, changed, withdrawn


@given(scenarios())
@settings(max_examples=examples(25), suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_retry_sends_exactly_the_rejected_rows_still_consenting(registry, monkeypatch, capsys,
                                                                scenario):
    n, refused, changed, withdrawn = scenario
    fakes.WRITE_HOOK.clear()
    vendor = Vendor()
    fakes.WRITE_HOOK.append(vendor)
    with project_dir():
        people(roster(n))
        vendor.refuse = set(refused)
        assert run_cli(monkeypatch, capsys, "sync", "mem", "crm")[0] == 4
        assert set(vendor.take()) == set(range(1, n + 1))
        assert rejected_keys(monkeypatch, capsys) == refused

        # Afterwards the source changes (rows renamed, a newcomer) and some of the
        # rejected people withdraw consent; the vendor now takes everything.
        people([*roster(n, changed, withdrawn), (n + 1, "new@example.com", "New", True)])
        vendor.refuse = set()
        code, report = cli_json(monkeypatch, capsys, "retry", SYNC)
        assert code == 0, report
        sent = vendor.take()
        assert set(sent) == refused - withdrawn
        for k, record in sent.items():  # as mapped from the source now
            assert record == {"email": f"p{k}@example.com",
                              "name": f"Person {k}" + (" (changed)" if k in changed else "")}
        s = report["syncs"][0]
        assert (s["rejected_only"], s["inserted"], s["consent_denied"]) == \
            (True, len(refused - withdrawn), len(withdrawn))
        runs = cli_json(monkeypatch, capsys, "runs", SYNC)[1]["runs"]
        assert runs[0]["report"]["rejected_only"] is True and len(runs) == 2
        # The withdrawn people were not sent: their rejections stay listed (a retry
        # tidies nothing it did not send) until the next full run.
        assert rejected_keys(monkeypatch, capsys) == withdrawn

        # The next run sends the other changes, which the retry left alone.
        assert run_cli(monkeypatch, capsys, "sync", "mem", "crm")[0] == 0
        assert set(vendor.take()) == (changed - refused - withdrawn) | {n + 1}
        assert rejected_keys(monkeypatch, capsys) == set()


def test_retry_in_mirror_mode_sends_no_deletes(registry, monkeypatch, capsys, tmp_path):
    vendor = Vendor()
    fakes.WRITE_HOOK.append(vendor)
    deletes: list[str] = []
    fakes.WRITE_HOOK.insert(0, lambda r: deletes.append(r.operation) if r.operation ==
                            "delete" else None)
    with project_dir("mirror"):
        people(roster(6))
        vendor.refuse = {2, 5}
        assert run_cli(monkeypatch, capsys, "sync", "mem", "crm")[0] == 4
        vendor.take()
        vendor.refuse = set()
        code, report = cli_json(monkeypatch, capsys, "retry", SYNC)
        assert code == 0 and set(vendor.take()) == {2, 5} and deletes == []
        assert report["syncs"][0]["deleted"] == 0
        # A row that left the source is deleted by the next full run, not by a retry.
        people(roster(6)[1:])
        assert cli_json(monkeypatch, capsys, "retry", SYNC)[1]["syncs"][0]["rows_read"] == 0
        assert deletes == []
        assert run_cli(monkeypatch, capsys, "sync", "mem", "crm")[0] == 0
        assert deletes == ["delete"]


def test_retry_dry_run_shows_the_rejected_rows_and_sends_nothing(registry, monkeypatch,
                                                                 capsys):
    vendor = Vendor()
    fakes.WRITE_HOOK.append(vendor)
    with project_dir():
        people(roster(5))
        vendor.refuse = {4}
        run_cli(monkeypatch, capsys, "sync", "mem", "crm")
        vendor.take()
        people(roster(5, changed={1, 4}))
        code, report = cli_json(monkeypatch, capsys, "retry", SYNC, "--dry-run")
        assert code == 0 and vendor.take() == {}
        s = report["syncs"][0]
        assert (s["status"], s["rows_read"], s["inserted"]) == ("dry_run", 1, 1)
        assert [r["records"] for r in s["preview"]] == [
            [{"email": "p4@example.com", "name": "Person 4 (changed)"}]]


def test_retry_of_an_unknown_sync_is_a_configuration_error(registry, monkeypatch, capsys):
    with project_dir():
        people(roster(2))
        code, _out, err = run_cli(monkeypatch, capsys, "retry", "nope")
        assert code == 3 and "no sync named 'nope'" in err


@pytest.fixture(autouse=True)
def _no_hooks_left() -> Iterator[None]:
    yield
    fakes.WRITE_HOOK.clear()
