"""docs/profiles.md, "Merges reach destinations", for a destination with a merge API
(``Capabilities.merges``), through the real CLI: after ``conn profiles build`` merged
two people, ``conn sync`` (upsert and mirror) calls the destination's merge with
(absorbed, survivor) instead of deleting the absorbed record; a survivor the consent
gate withholds gets no merge (the absorbed record is deleted); a merge the destination
refuses is listed and tried again next run. Also the store's chains of merges
(:meth:`ProfileStore.survivors`) against a plain model, with hypothesis."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pytest
from conn import hookimpl
from conn.destination import (
    Capabilities,
    Destination,
    ObjectInfo,
    Rejection,
    WriteRequest,
    WriteResult,
)
from conn.plugins import Registry, reset_registry
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.profiles.test_profiles_cli import APP, CRM, PROJECT, cli, warehouse

pytest.importorskip("conn_source_duckdb")

#: What the merging destination holds: profile_id -> record.
held: dict[str, dict[str, Any]] = {}
#: The merges it performed, (absorbed, survivor), and the records it deleted.
merged: list[tuple[str, str]] = []
deleted: list[str] = []
#: When set, every merge is refused with this reason.
refuse: list[str] = []


class MergingDestination(Destination):
    """A CRM keyed by profile id with a merge API, kept in memory."""

    name = "merging"
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    def check(self) -> None:
        """Nothing to reach."""

    def objects(self) -> list[ObjectInfo]:
        """``people`` by profile id: upsert, mirror, and a merge API."""
        caps = Capabilities(modes=frozenset({"upsert", "mirror"}), merges="test merge")
        return [ObjectInfo("people", {"type": "object"}, ("profile_id",), caps)]

    def write_batch(self, request: WriteRequest) -> WriteResult:
        """Upsert or delete by profile id."""
        for row in request.to_pylist():
            if request.operation == "delete":
                deleted.append(row["profile_id"])
                held.pop(row["profile_id"], None)
            else:
                held[row["profile_id"]] = row
        return WriteResult()

    def merge_batch(self, request: WriteRequest) -> WriteResult:
        """Fold each absorbed record into its survivor (both must be held), as a CRM's
        merge does; an absorbed record already gone counts as merged."""
        absorbed, survivors = request.merge_pairs()
        out = WriteResult()
        for i, (a, s) in enumerate(zip(absorbed.to_pylist(), survivors.to_pylist(),
                                       strict=True)):
            if refuse:
                out.rejected.append(Rejection(i, refuse[0]))
            elif s not in held:
                out.rejected.append(Rejection(i, f"survivor {s} not found"))
            else:
                merged.append((a, s))
                held.pop(a, None)
        return out


@hookimpl
def register_destinations(register: Callable[..., None]) -> None:
    """This module's destination."""
    register(MergingDestination)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    warehouse(tmp_path, APP, CRM)
    monkeypatch.chdir(tmp_path)
    reg = Registry()
    reg.add_module(sys.modules[__name__])
    reset_registry(reg)
    for kept in (held, merged, deleted, refuse):
        kept.clear()
    yield tmp_path
    reset_registry(Registry(autoload=False))


def configure(path: Path, mode: str) -> None:
    (path / "conn.yml").write_text(PROJECT.replace("type: files", "type: merging")
                                   .replace("mode: mirror", f"mode: {mode}"))


def sync(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
         ) -> tuple[int, dict[str, Any]]:
    code, out = cli(monkeypatch, capsys, "sync", "profiles", "out", "--json")
    (s,) = json.loads(out[out.index("{"):])["syncs"]
    return code, s


def first_run(path: Path, monkeypatch: pytest.MonkeyPatch,
              capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """Build and sync the six people; name -> profile id."""
    assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
    code, s = sync(monkeypatch, capsys)
    assert code == 0 and s["inserted"] == 6, s
    return {r["name"]: k for k, r in held.items()}


#: Cat turns out to be Bob (a new app row ties dev-c to bob's e-mail): cat is absorbed.
CAT_IS_BOB = (6, "bob@example.com", "dev-c", None, True, "2026-02-01")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["upsert", "mirror"])
def test_a_merge_calls_the_destinations_merge_instead_of_deleting(project, monkeypatch,
                                                                  capsys, mode):
    configure(project, mode)
    ids = first_run(project, monkeypatch, capsys)
    cat, bob = ids["cat"], ids["Bob Jones"]
    # Upsert: Bob's mapped fields stay as they were (unchanged, yet planned: he passed
    # the gate, and is at the destination). Mirror: Bob is renamed in the same build,
    # so the survivor is the record acknowledged in this run.
    crm = CRM if mode == "upsert" else [
        (*r[:3], "Robert Jones", *r[4:]) if r[0] == "c2" else r for r in CRM]
    warehouse(project, [*APP, CAT_IS_BOB], crm)
    code, out = cli(monkeypatch, capsys, "profiles", "build", "--json")
    assert code == 0 and json.loads(out)["builds"][0]["merges"] == 1, out
    code, s = sync(monkeypatch, capsys)
    assert code == 0, s
    assert merged == [(cat, bob)] and deleted == []
    assert (s["merged"], s["deleted"], s["updated"]) == (1, 0, int(mode == "mirror"))
    assert cat not in held and held[bob]["email"] == "bob@example.com"
    # The absorbed key left the state: nothing more to merge or delete.
    code, s = sync(monkeypatch, capsys)
    assert code == 0 and "merged" not in s and s["deleted"] == 0, s
    assert merged == [(cat, bob)] and deleted == []


@pytest.mark.slow
def test_a_withheld_survivor_gets_no_merge_the_absorbed_record_is_deleted(
        project, monkeypatch, capsys):
    """Bob withdraws in the build that merges cat into him: the gate withholds Bob, so
    no merge sends anything to his record; cat's record is deleted as without a merge
    API (upsert keeps Bob's old record, as upsert keeps every withheld one)."""
    configure(project, "upsert")
    ids = first_run(project, monkeypatch, capsys)
    cat, bob = ids["cat"], ids["Bob Jones"]
    withdrawn = (7, "bob@example.com", None, None, False, "2026-03-01")
    warehouse(project, [*APP, CAT_IS_BOB, withdrawn], CRM)
    assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
    code, s = sync(monkeypatch, capsys)
    assert code == 0, s
    assert merged == [] and deleted == [cat]
    assert s["deleted"] == 1 and "merged" not in s and s["consent_denied"] == 1
    assert bob in held


@pytest.mark.slow
def test_a_refused_merge_is_listed_and_tried_again(project, monkeypatch, capsys):
    configure(project, "upsert")
    ids = first_run(project, monkeypatch, capsys)
    cat, bob = ids["cat"], ids["Bob Jones"]
    warehouse(project, [*APP, CAT_IS_BOB], CRM)
    assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
    refuse.append("MERGE_LOCKED: try again later")
    code, s = sync(monkeypatch, capsys)
    assert code == 4 and s["status"] == "rejected", s
    assert s["rejection_reasons"] == {"MERGE_LOCKED: try again later": 1}
    # Neither merged nor deleted: the absorbed record stays until the merge goes through.
    assert merged == [] and deleted == [] and cat in held
    code, out = cli(monkeypatch, capsys, "rejected", "people_out", "--json")
    assert code == 0, out
    assert cat in out and "MERGE_LOCKED" in out
    refuse.clear()
    code, s = sync(monkeypatch, capsys)
    assert code == 0 and s["merged"] == 1, s
    assert merged == [(cat, bob)] and deleted == [] and cat not in held
    code, out = cli(monkeypatch, capsys, "rejected", "people_out", "--json")
    assert cat not in out


@pytest.mark.slow
def test_a_dry_run_previews_the_merge(project, monkeypatch, capsys):
    configure(project, "mirror")
    ids = first_run(project, monkeypatch, capsys)
    warehouse(project, [*APP, CAT_IS_BOB], CRM)
    assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
    code, out = cli(monkeypatch, capsys, "sync", "profiles", "out", "--dry-run", "--json")
    assert code == 0, out
    (s,) = json.loads(out[out.index("{"):])["syncs"]
    assert s["merged"] == 1 and merged == []
    merges = [r for r in s["preview"] if r.get("operation") == "merge"]
    assert merges and merges[0]["records"][0]["profile_id"] == ids["cat"]


# --- chains of merges in the store ------------------------------------------------------

def _store_with(path: Path, live: list[str], merges: list[tuple[int, str, str]]):
    """A profile store whose set ``s`` holds ``live`` profiles and these merges (build
    number, old id, new id)."""
    import duckdb
    from conn.profiles.store import ProfileStore

    store = ProfileStore(path / "p.duckdb")
    con: duckdb.DuckDBPyConnection = store.con
    con.execute('CREATE TABLE "s.golden" (profile_id VARCHAR)')
    if live:
        con.executemany('INSERT INTO "s.golden" VALUES (?)', [[x] for x in live])
    con.execute('CREATE TABLE "s.records" (x INT)')
    con.execute('CREATE TABLE "s.changes" (build_id VARCHAR, changed_at TIMESTAMPTZ, '
                'kind VARCHAR, old_id VARCHAR, new_id VARCHAR, cause VARCHAR)')
    if merges:
        con.executemany("INSERT INTO \"s.changes\" VALUES (?, TIMESTAMPTZ '2026-01-01' "
                        "+ to_days(?), 'merge', ?, ?, NULL)",
                        [[str(b), b, o, n] for b, o, n in merges])
    return store


def model(live: set[str], merges: list[tuple[int, str, str]]) -> dict[str, str]:
    """docs/profiles.md in plain Python: an id's survivor follows its last merge (one
    target only) from profile to profile until a live one; none for a live id, a
    cycle or a dead end."""
    last: dict[str, int] = {}
    for b, o, _ in merges:
        last[o] = max(last.get(o, b), b)
    targets: dict[str, set[str]] = {}
    for b, o, n in merges:
        if b == last[o]:
            targets.setdefault(o, set()).add(n)
    step = {o: next(iter(t)) for o, t in targets.items() if len(t) == 1}
    out = {}
    for o in step:
        if o in live:
            continue
        cur, seen = step[o], {o}
        while cur not in live and cur in step and cur not in seen:
            seen.add(cur)
            cur = step[cur]
        if cur in live:
            out[o] = cur
    return out


def test_survivors_follow_chains(tmp_path):
    store = _store_with(tmp_path, ["c", "d", "y", "z"],
                        [(1, "a", "b"), (2, "b", "c"),            # a -> b -> c
                         (1, "m", "y"), (1, "m", "z"),            # split: ambiguous
                         (1, "p", "q"), (2, "q", "p"),            # a cycle
                         (1, "d", "c"),                           # d is a profile again
                         (1, "e", "gone")])                       # a dead end
    try:
        t = store.survivors("s")
    finally:
        store.close()
    assert dict(zip(t.column("old_id").to_pylist(), t.column("new_id").to_pylist(),
                    strict=True)) == {"a": "c", "b": "c"}


IDS = st.sampled_from(list("abcdefgh"))


@settings(max_examples=60, deadline=None)
@given(live=st.sets(IDS, max_size=4),
       merges=st.lists(st.tuples(st.integers(1, 4), IDS, IDS).filter(lambda m: m[1] != m[2]),
                       max_size=12))
def test_survivors_match_the_model(tmp_path_factory, live, merges):
    path = tmp_path_factory.mktemp("s")
    store = _store_with(path, sorted(live), merges)
    try:
        t = store.survivors("s")
    finally:
        store.close()
    got = dict(zip(t.column("old_id").to_pylist(), t.column("new_id").to_pylist(),
                   strict=True))
    assert got == model(live, merges)
    assert pa.types.is_string(t.schema.field("new_id").type)


# --- a destination without a merge API, keyed by e-mail ---------------------------------

#: What the e-mail-keyed destination holds: e-mail -> record.
by_email: dict[str, dict[str, Any]] = {}


class EmailKeyedDestination(Destination):
    """A list keyed by e-mail that can delete but has no merge API."""

    name = "by_email"
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    def check(self) -> None:
        """Nothing to reach."""

    def objects(self) -> list[ObjectInfo]:
        """``people`` by e-mail: upsert and mirror, no merges."""
        caps = Capabilities(modes=frozenset({"upsert", "mirror"}))
        return [ObjectInfo("people", {"type": "object"}, ("email",), caps)]

    def write_batch(self, request: WriteRequest) -> WriteResult:
        """Upsert or delete by e-mail."""
        for row in request.to_pylist():
            if request.operation == "delete":
                deleted.append(row["email"])
                by_email.pop(row["email"], None)
            else:
                by_email[row["email"]] = row
        return WriteResult()


@hookimpl
def register_destinations(register: Callable[..., None]) -> None:  # noqa: F811
    """This module's destinations."""
    register(MergingDestination)
    register(EmailKeyedDestination)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["upsert", "mirror"])
def test_an_absorbed_record_whose_match_value_a_profile_holds_is_not_deleted(
        project, monkeypatch, capsys, mode):
    """Cat is absorbed into Bob. At an e-mail-keyed destination without a merge API,
    cat's record is that of ``test@test.com``, the junk e-mail cat and Dan both typed
    (junk joins no one, so they stay two profiles holding one destination record).
    Deleting cat's record would delete Dan's: a record a profile of this run holds is
    not deleted. Before the fix, both modes deleted it."""
    by_email.clear()
    project.joinpath("conn.yml").write_text(
        PROJECT.replace("type: files", "type: by_email")
        .replace("mode: mirror", f"mode: {mode}"))
    assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
    code, s = sync(monkeypatch, capsys)
    assert code == 0, s
    assert by_email["test@test.com"]["name"] in ("cat", "dan"), by_email
    warehouse(project, [*APP, CAT_IS_BOB], CRM)
    code, out = cli(monkeypatch, capsys, "profiles", "build", "--json")
    assert code == 0 and json.loads(out)["builds"][0]["merges"] == 1, out
    code, s = sync(monkeypatch, capsys)
    assert code == 0, s
    assert "test@test.com" not in deleted, (deleted, by_email)
    assert "test@test.com" in by_email


@pytest.mark.slow
def test_a_mirror_sync_keeps_a_record_a_staying_profile_holds(project, monkeypatch, capsys):
    """Dan leaves the sources; Cat, who typed the same junk e-mail, stays. A mirror sync
    keyed by e-mail deletes Dan's profile, but not the ``test@test.com`` record Cat
    holds (no merge involved: the set has none)."""
    by_email.clear()
    project.joinpath("conn.yml").write_text(PROJECT.replace("type: files", "type: by_email"))
    assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
    assert sync(monkeypatch, capsys)[0] == 0
    warehouse(project, [r for r in APP if r[3] != "dan"], CRM)
    assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
    code, s = sync(monkeypatch, capsys)
    assert code == 0, s
    assert "test@test.com" not in deleted and "test@test.com" in by_email
