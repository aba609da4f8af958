"""Consent follows the person (docs/profiles.md), property-tested against a plain model
written from the docs: random profiles with several identities (one e-mail shared by two
profiles, one junk e-mail), random consent events under any rendering of any identity,
purposes, times (ties, missing and unreadable ones) and statuses. Expected per profile
and purpose: of the events recorded under the profile's identities (junk identifies no
one), the latest wins; an event we cannot place in time counts as the latest and cannot
grant; at the same instant the most restrictive wins; no event is no record (withheld
unless the sync names a legal basis). The real path decides: the profile store as a
build leaves it, ``conn.profiles.consent.gate_index`` and the consent gate."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pyarrow as pa
from conn.config import load_project
from conn.consent import build_gate
from conn.destination import ObjectInfo
from conn.plugins import Registry
from conn.profiles import store
from conn.profiles.consent import gate_index
from conn.source import StreamInfo
from conn.sync_context import SyncContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import examples

SEP = "\x1f"
PURPOSES = ("marketing", "analytics")
STATUSES = ("granted", "denied", "withdrawn", "yes", "maybe", None)
#: Mostly one instant (written two ways), so that identities often tie.
TIMES = ("2026-01-02T00:00:00", "2026-01-02T00:00:00+00:00", "2026-01-02T00:00:00",
         "2026-01-01T00:00:00", "2026-01-03T00:00:00", None, "garbage")
#: docs/consent.md: no record < granted < malformed < denied.
NO_RECORD, GRANTED, MALFORMED, DENIED = 0, 1, 2, 3
CODE = {"granted": GRANTED, "yes": GRANTED, "denied": DENIED, "withdrawn": DENIED}
SHARED, JUNK = "family@example.com", "test@test.com"

CONN_YML = """\
version: 1
sources:
  wh: {type: duckdb, config: {path: w.duckdb}}
destinations:
  crm: {type: files, purposes: [marketing, analytics], config: {path: out}}
consent_sources:
  cs: {source: wh, stream: consent, subject: who}
profiles:
  people:
    identifiers: {email: {}, device_id: {}}
    edges:
      app: {source: wh, stream: app, identifiers: {mail: email, dev: device_id}}
syncs:
  s:
    source: profiles
    stream: profiles.people
    destination: crm
    object: people
    consent: {source: cs, subject_type: [email, device_id], legal_basis: BASES}
"""


@st.composite
def scenarios(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(1, 4))
    profiles: dict[str, set[tuple[str, str]]] = {}
    for i in range(n):
        ids = {("email", f"p{i}.{j}@example.com") for j in range(draw(st.integers(1, 3)))}
        ids |= {("device_id", f"dev-{i}-{j}") for j in range(draw(st.integers(0, 2)))}
        profiles[f"p_{i:016x}"] = ids
    # A family e-mail two profiles hold, and a junk value one of them holds.
    holders = draw(st.lists(st.sampled_from(sorted(profiles)), unique=True, max_size=2))
    for pid in holders:
        profiles[pid].add(("email", SHARED))
    profiles[draw(st.sampled_from(sorted(profiles)))].add(("email", JUNK))
    known = sorted({v for ids in profiles.values() for _, v in ids})
    subject = st.one_of(st.sampled_from(known), st.just("stranger@example.com"))
    rendering = st.sampled_from((str, str.upper, lambda v: f"  {v} ", str.title))
    # Half the examples record everything at one instant (written two ways): ties
    # between identities everywhere.
    times = st.sampled_from(TIMES[:2] if draw(st.booleans()) else TIMES)
    events = draw(st.lists(st.tuples(
        st.builds(lambda v, r: r(v) if "@" in v else (f" {v} " if r is not str else v),
                  subject, rendering),
        st.sampled_from(PURPOSES), st.sampled_from(STATUSES), times), max_size=30))
    bases = [p for p in PURPOSES if draw(st.booleans())]
    return {"profiles": profiles, "events": events, "bases": bases}


def normalised(subject: str) -> set[tuple[str, str]]:
    """The identities an event's subject stands for (docs/profiles.md: e-mail trimmed and
    lowercased, other kinds only trimmed)."""
    return {("email", subject.strip().lower()), ("device_id", subject.strip())}


def model(sc: dict[str, Any]) -> dict[tuple[str, str], int]:
    """Expected consent code per profile and purpose."""
    out = {}
    for pid, ids in sc["profiles"].items():
        mine = {i for i in ids if i[1] != JUNK}
        for p in PURPOSES:
            evs = [(s, t) for (subj, pp, s, t) in sc["events"]
                   if pp == p and normalised(subj) & mine]
            if not evs:
                out[pid, p] = NO_RECORD
                continue

            def code(e: tuple) -> int:
                c = CODE.get(e[0], MALFORMED)
                return max(c, MALFORMED) if e[1] in (None, "garbage") else c

            def order(e: tuple) -> tuple:
                unplaced = e[1] in (None, "garbage")
                # Times as instants: "+00:00" is the same instant as no offset (UTC).
                return (unplaced, "" if unplaced else e[1][:19], code(e))

            out[pid, p] = code(max(evs, key=order))
    return out


_dirs = itertools.count()


def save_store(root: Path, profiles: dict[str, set[tuple[str, str]]]) -> None:
    """The profile store as a build leaves it: one record per identity, the junk value
    listed as junk."""
    rkeys, owners, idents = [], [], []
    for n, (pid, ids) in enumerate(sorted(profiles.items())):
        for m, (t, v) in enumerate(sorted(ids)):
            rkeys.append(n * 100 + m)
            owners.append(pid)
            idents.append(f"{t}{SEP}{v}")
    records = pa.table({"rkey": pa.array(rkeys, pa.uint64()), "profile": owners,
                        "island": pa.array([0] * len(rkeys), pa.int64())})
    entries = pa.table({"rkey": pa.array(rkeys, pa.uint64()), "ident": idents})
    golden = pa.table({"profile_id": sorted(profiles)})
    junk = pa.table({"ident": [f"email{SEP}{JUNK}"], "records": pa.array([200], pa.int64())})
    changes = pa.table({"kind": pa.array([], pa.string()), "old_id": pa.array([], pa.string()),
                        "new_id": pa.array([], pa.string()), "cause": pa.array([], pa.string())})
    with store.opened(root / ".conn") as st_:
        st_.save("people", "b1", "2026-02-01T00:00:00Z", True,
                 tables={"records": records, "entries": entries, "golden": golden,
                         "junk": junk}, changes=changes, stats={})


def decide(root: Path, sc: dict[str, Any]) -> tuple[dict[tuple[str, str], int], set[str]]:
    """Consent codes per profile and purpose, and the profiles passing, by the real
    gate over the stream's primary keys."""
    (root / "conn.yml").write_text(CONN_YML.replace("BASES", "{" + ", ".join(
        f"{p}: contract" for p in sc["bases"]) + "}"))
    project = load_project(root / "conn.yml", validate_plugins=False)
    save_store(root, sc["profiles"])
    ev = sc["events"]
    events = pa.table({"who": [e[0] for e in ev], "purpose": [e[1] for e in ev],
                       "status": pa.array([e[2] for e in ev], pa.string()),
                       "timestamp": pa.array([e[3] for e in ev], pa.string())})
    ids = pa.array(sorted(sc["profiles"]), pa.string())
    batch = pa.record_batch({"profile_id": ids})
    sync = project.syncs["s"]
    ctx = SyncContext(project, sync, project.destinations["crm"],
                      ObjectInfo("people", {"type": "object", "additionalProperties": True},
                                 ("profile_id",)),
                      StreamInfo("profiles.people", batch.schema, ("profile_id",)),
                      Registry(autoload=False), lambda name: events, "profile_id")
    gate = build_gate(ctx, gate_index(ctx))
    assert gate.issues() == []
    d = gate.decide(batch, ids)
    codes = {(pid, p): int(d.codes[p][i]) for i, pid in enumerate(ids.to_pylist())
             for p in PURPOSES}
    return codes, {pid for i, pid in enumerate(ids.to_pylist()) if d.passed[i]}


@settings(max_examples=examples(100), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenarios())
def test_consent_per_profile_matches_the_model(tmp_path: Path, sc: dict[str, Any]) -> None:
    root = tmp_path / f"p{next(_dirs)}"
    root.mkdir()
    codes, passed = decide(root, sc)
    expected = model(sc)
    assert codes == expected
    allowed = {pid for pid in sc["profiles"] if all(
        expected[pid, p] == GRANTED or (expected[pid, p] == NO_RECORD and p in sc["bases"])
        for p in PURPOSES)}
    assert passed == allowed


def test_a_denial_at_the_same_instant_under_another_identity_wins(tmp_path: Path) -> None:
    sc = {"profiles": {"p_0000000000000001": {("email", "a@example.com"),
                                              ("device_id", "d1")}},
          "events": [("A@example.com", "marketing", "granted", "2026-01-02T00:00:00"),
                     ("d1", "marketing", "denied", "2026-01-02T00:00:00+00:00"),
                     ("d1", "analytics", "granted", "2026-01-01T00:00:00")],
          "bases": []}
    codes, passed = decide(tmp_path, sc)
    assert codes == {("p_0000000000000001", "marketing"): DENIED,
                     ("p_0000000000000001", "analytics"): GRANTED}
    assert passed == set()


def config_problems(tmp_path: Path, consent: str, *, source: str = "profiles",
                    stream: str = "profiles.people") -> list[str]:
    """What loading conn.yml reports (file: path: detail) for a sync's ``consent:``."""
    from conn.errors import ConfigError, ConfigErrors

    body = CONN_YML.replace("    consent: {source: cs, subject_type: [email, device_id], "
                            "legal_basis: BASES}", f"    consent: {consent}")
    body = body.replace("source: profiles\n    stream: profiles.people",
                        f"source: {source}\n    stream: {stream}")
    (tmp_path / "conn.yml").write_text(body)
    try:
        load_project(tmp_path / "conn.yml", validate_plugins=False)
    except ConfigError as exc:
        errs = exc.errors if isinstance(exc, ConfigErrors) else [exc]
        return [str(e).removeprefix(str(tmp_path) + "/") for e in errs]
    return []


def test_subject_type_settings_are_checked_when_conn_yml_loads(tmp_path: Path) -> None:
    assert config_problems(tmp_path, "{source: cs, subject_type: email}") == []
    (got,) = config_problems(tmp_path, "{source: cs, subject_type: phone}")
    assert got.startswith("conn.yml: syncs.s.consent.subject_type: unknown identifier type "
                          "'phone': expected an identifier type of profile set 'people' "
                          "(email, device_id)")
    (got,) = config_problems(tmp_path, "{subject_type: [email], legal_basis: "
                                       "{marketing: contract, analytics: contract}}")
    assert got.startswith("conn.yml: syncs.s.consent.source: subject_type says how a "
                          "consent source's subjects are read")
    (got,) = config_problems(tmp_path, "{source: cs, subject_type: email}", source="wh",
                             stream="people")
    assert got.startswith("conn.yml: syncs.s.consent.subject_type: subject_type applies to "
                          "a sync reading a profile set")
    got = config_problems(tmp_path, "{source: cs, subject_type: 7}")
    assert got and all(g.startswith("conn.yml: syncs.s.consent.subject_type") for g in got)
    assert config_problems(tmp_path, "{source: cs, subject_type: []}")


def test_without_subject_type_events_match_the_profile_id(tmp_path: Path) -> None:
    """docs/profiles.md: without subject_type, subjects are matched with the primary key
    (``profile_id``), as for any stream: an e-mail reaches nothing."""
    sc = {"profiles": {"p_0000000000000001": {("email", "a@example.com")}},
          "events": [("a@example.com", "marketing", "granted", "2026-01-02T00:00:00"),
                     ("p_0000000000000001", "analytics", "granted", "2026-01-02T00:00:00")],
          "bases": []}
    (tmp_path / "conn.yml").write_text(CONN_YML.replace(
        ", subject_type: [email, device_id], legal_basis: BASES", ""))
    project = load_project(tmp_path / "conn.yml", validate_plugins=False)
    save_store(tmp_path, sc["profiles"])
    ev = sc["events"]
    events = pa.table({"who": [e[0] for e in ev], "purpose": [e[1] for e in ev],
                       "status": [e[2] for e in ev], "timestamp": [e[3] for e in ev]})
    batch = pa.record_batch({"profile_id": ["p_0000000000000001"]})
    ctx = SyncContext(project, project.syncs["s"], project.destinations["crm"],
                      ObjectInfo("people", {"type": "object", "additionalProperties": True},
                                 ("profile_id",)),
                      StreamInfo("profiles.people", batch.schema, ("profile_id",)),
                      Registry(autoload=False), lambda name: events, "profile_id")
    assert gate_index(ctx) is None
    d = build_gate(ctx).decide(batch, batch.column(0))
    assert (int(d.codes["marketing"][0]), int(d.codes["analytics"][0])) == \
        (NO_RECORD, GRANTED)


def test_a_set_not_built_yet_gives_no_profile_a_record(tmp_path: Path) -> None:
    """Nothing to match events with before the first build (reading the stream then
    fails, saying to build): the index is empty, never a grant."""
    from conn.config.profiles import consent_subject_types
    from conn.profiles.consent import profile_index

    (tmp_path / "conn.yml").write_text(CONN_YML.replace("BASES", "{}"))
    project = load_project(tmp_path / "conn.yml", validate_plugins=False)
    found = consent_subject_types(project, project.syncs["s"])
    assert found is not None
    events = pa.table({"who": ["a@example.com"], "purpose": ["marketing"],
                       "status": ["granted"], "timestamp": ["2026-01-01"]})
    index = profile_index("cs", project.consent_sources["cs"], events, project, *found)
    assert index.codes_for("marketing", index.lookup(pa.array(["p_1"]))).tolist() == \
        [NO_RECORD]
