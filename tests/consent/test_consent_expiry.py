"""Consent expiry (docs/consent.md, "Consent expiry" and "max_age values"): the accepted
durations, the boundaries, the combination with withdrawals and legal bases, grant
times that are missing or unreadable, typed timestamps, and a plain model of the
documented rules compared with the gate on random inputs."""

from __future__ import annotations

import calendar
import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from conn.config.durations import parse_duration
from conn.config.load import load_project
from conn.consent import build_gate
from conn.errors import ConfigError, ConfigErrors
from conn.testing.sandbox import make_context
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cli_in_process import run_cli
from tests.conftest import examples

NOW = dt.datetime(2026, 3, 31, 12, 0, 0)
NOW_TEXT = "2026-03-31T12:00:00Z"


@pytest.fixture(autouse=True)
def _now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONN_NOW", NOW_TEXT)


# --- the plain model of the documented rules ---------------------------------------------

def add_months(t: dt.datetime, months: int) -> dt.datetime:
    """Calendar months: the day is kept, clamped to the month's last day."""
    y, m = divmod(t.month - 1 + months, 12)
    year, month = t.year + y, m + 1
    return t.replace(year=year, month=month,
                     day=min(t.day, calendar.monthrange(year, month)[1]))


#: The documented forms, as (months, days, seconds).
FORMS = {"24 months": (24, 0, 0), "730 days": (0, 730, 0), "2 years": (24, 0, 0),
         "1 Month": (1, 0, 0), "P2Y": (24, 0, 0), "P24M": (24, 0, 0), "P730D": (0, 730, 0),
         "P1Y6M": (18, 0, 0), "P2W": (0, 14, 0), "PT36H": (0, 0, 129600),
         "P1DT12H": (0, 1, 43200), "90 minutes": (0, 0, 5400), "1 week": (0, 7, 0),
         "45 seconds": (0, 0, 45)}


def expires(t: dt.datetime, form: str) -> dt.datetime:
    months, days, seconds = FORMS[form]
    return add_months(t, months) + dt.timedelta(days=days, seconds=seconds)


def read_time(text: str | None) -> dt.datetime | None:
    """ISO 8601 text, UTC when it has no offset; None when null or unreadable."""
    if text is None:
        return None
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


# --- durations -------------------------------------------------------------------------

@pytest.mark.parametrize("text", sorted(FORMS))
def test_documented_forms_parse(text: str) -> None:
    d = parse_duration(text)
    assert (d.months, d.days, d.seconds) == FORMS[text]


@pytest.mark.parametrize("value", [24, "24", "1.5 years", "0 days", "P0D", "-P2Y", "P",
                                   "PT", "2 fortnights", "", "P2Y3", "P1.5Y", True,
                                   "24 months ago"])
def test_other_values_are_refused_with_the_accepted_forms(value: Any) -> None:
    with pytest.raises(ConfigError) as e:
        parse_duration(value, file="conn.yml", path="syncs.s.consent.max_age.marketing")
    assert e.value.path == "syncs.s.consent.max_age.marketing"
    assert "'24 months'" in str(e.value) and "'P2Y'" in str(e.value)


def test_loading_refuses_a_bad_max_age_naming_file_and_path(tmp_path: Path,
                                                            registry: Any) -> None:
    doc = {"version": 1, "sources": {"wh": {"type": "memory"}},
           "destinations": {"crm": {"type": "recorder", "purposes": ["marketing"]}},
           "syncs": {"s": {"source": "wh", "stream": "people", "destination": "crm",
                           "object": "contacts", "primary_key": "id",
                           "consent": {"columns": {"marketing": "mkt"},
                                       "max_age": {"marketing": "24"}}}}}
    path = tmp_path / "conn.yml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises((ConfigError, ConfigErrors)) as e:
        load_project(path, registry=registry)
    errs = e.value.errors if isinstance(e.value, ConfigErrors) else [e.value]
    bad = [x for x in errs if x.path == "syncs.s.consent.max_age.marketing"]
    assert bad and bad[0].file == str(path) and "730 days" in str(bad[0])
    doc["syncs"]["s"]["consent"]["max_age"] = {"marketing": ["24 months"]}
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises((ConfigError, ConfigErrors)) as e:
        load_project(path, registry=registry)
    assert "max_age.marketing" in str(e.value)


# --- the gate ----------------------------------------------------------------------------

def rows_batch(values: list[tuple[str, Any, Any]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [{"id": i, "mkt": v, "mkt_at": t} for i, v, t in values],
        schema=pa.schema([("id", pa.string()), ("mkt", pa.string()), ("mkt_at", pa.string())]))


def gate_for(batch: pa.RecordBatch, consent: dict[str, Any], ev: pa.Table | None = None,
             purposes: tuple[str, ...] = ("marketing",)) -> Any:
    if ev is None:
        ev = pa.table({"customer": pa.array([], pa.string()),
                       "purpose": pa.array([], pa.string()),
                       "status": pa.array([], pa.string()), "at": pa.array([], pa.string())})
    ctx = make_context(batch.schema, purposes=purposes, consent=consent,
                       mapping={"id": "id"},
                       consent_sources={"cs": {"source": "src", "stream": "ev",
                                               "subject": "customer", "timestamp": "at"}},
                       events={"ev": ev})
    gate = build_gate(ctx)
    assert gate.issues() == []
    return gate


def passed(gate: Any, batch: pa.RecordBatch) -> list[str]:
    return gate.apply(batch, batch.column("id")).keys.to_pylist()


def events_table(*rows: tuple) -> pa.Table:
    subj, purpose, status, at = zip(*rows, strict=True)
    return pa.table({"customer": list(subj), "purpose": list(purpose),
                     "status": list(status), "at": pa.array(at, pa.string())})


@pytest.mark.parametrize("age,exact", [("24 months", "2024-03-31T12:00:00"),
                                       ("730 days", "2024-03-31T12:00:00"),
                                       ("P1M", "2026-02-28T12:00:00")])
def test_boundary_column_and_events(age: str, exact: str) -> None:
    """Exactly max_age old: still valid; one second older: expired."""
    t = dt.datetime.fromisoformat(exact)
    older = (t - dt.timedelta(seconds=1)).isoformat()
    younger = (t + dt.timedelta(seconds=1)).isoformat()
    batch = rows_batch([("exact", "yes", exact), ("older", "yes", older),
                        ("younger", "yes", younger)])
    gate = gate_for(batch, {"columns": {"marketing": "mkt"},
                            "granted_at": {"marketing": "mkt_at"},
                            "max_age": {"marketing": age}})
    if age == "P1M":  # 28 Feb + 1 month = 28 Mar: already expired on 31 Mar
        assert passed(gate, batch) == []
    else:
        assert passed(gate, batch) == ["exact", "younger"]
        assert gate.summary()["withheld_by_reason"]["expired"] == 1
        assert gate.summary()["per_purpose"]["marketing"]["withheld"]["expired"] == 1
    ev = events_table(("exact", "marketing", "granted", exact),
                      ("older", "marketing", "granted", older),
                      ("younger", "marketing", "granted", younger))
    gate = gate_for(batch, {"source": "cs", "max_age": {"marketing": age}}, ev)
    assert passed(gate, batch) == ([] if age == "P1M" else ["exact", "younger"])


def test_month_ends_clamp() -> None:
    """31 January + 1 month is the end of February: valid on 28 Feb, expired after."""
    batch = rows_batch([("1", "yes", "2026-01-31T12:00:00")])
    consent = {"columns": {"marketing": "mkt"}, "granted_at": {"marketing": "mkt_at"},
               "max_age": {"marketing": "1 month"}}
    for now, ok in (("2026-02-28T12:00:00Z", True), ("2026-02-28T12:00:01Z", False)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CONN_NOW", now)
            assert passed(gate_for(batch, consent), batch) == (["1"] if ok else [])


def test_withdrawal_newer_than_grant_is_denied_not_expired() -> None:
    batch = rows_batch([("1", None, None), ("2", None, None)])
    ev = events_table(("1", "marketing", "granted", "2020-01-01T00:00:00"),
                      ("1", "marketing", "withdrawn", "2020-02-01T00:00:00"),
                      ("2", "marketing", "granted", "2026-01-01T00:00:00"),
                      ("2", "marketing", "withdrawn", "2026-02-01T00:00:00"))
    gate = gate_for(batch, {"source": "cs", "max_age": {"marketing": "P1Y"},
                            "legal_basis": {"marketing": "legitimate_interests"}}, ev)
    assert passed(gate, batch) == []
    assert gate.summary()["withheld_by_reason"]["denied"] == 2
    assert gate.summary()["withheld_by_reason"]["expired"] == 0


def test_expired_grant_with_a_legal_basis_passes_on_that_basis() -> None:
    batch = rows_batch([("1", "yes", "2020-01-01T00:00:00"), ("2", "yes", NOW_TEXT)])
    gate = gate_for(batch, {"columns": {"marketing": "mkt"},
                            "granted_at": {"marketing": "mkt_at"},
                            "max_age": {"marketing": "24 months"},
                            "legal_basis": {"marketing": "contract"}})
    assert passed(gate, batch) == ["1", "2"]
    s = gate.summary()
    assert s["legal_bases"]["marketing"] == {"contract": 1, "consent": 1}
    assert s["withheld"] == 0 and s["max_age"] == {"marketing": "24 months"}


def test_fresh_grant_on_the_other_side_still_grants() -> None:
    batch = rows_batch([("1", "yes", "2020-01-01T00:00:00")])
    ev = events_table(("1", "marketing", "granted", "2026-03-01T00:00:00"))
    gate = gate_for(batch, {"columns": {"marketing": "mkt"}, "source": "cs",
                            "granted_at": {"marketing": "mkt_at"},
                            "max_age": {"marketing": "24 months"}}, ev)
    assert passed(gate, batch) == ["1"]


@pytest.mark.parametrize("when", [None, "", "garbage", "2026-13-45"])
def test_grant_time_null_or_unreadable_is_malformed(when: str | None) -> None:
    batch = rows_batch([("1", "yes", when), ("2", "no", when), ("3", None, when)])
    gate = gate_for(batch, {"columns": {"marketing": "mkt"},
                            "granted_at": {"marketing": "mkt_at"},
                            "max_age": {"marketing": "24 months"}})
    assert passed(gate, batch) == []
    assert gate.summary()["withheld_by_reason"] == {"no_record": 1, "expired": 0,
                                                    "malformed": 1, "denied": 1,
                                                    "suppressed": 0}


def test_without_granted_at_a_column_grant_does_not_expire() -> None:
    from conn.consent.expiry import expiry_warnings

    batch = rows_batch([("1", "yes", "1990-01-01T00:00:00")])
    gate = gate_for(batch, {"columns": {"marketing": "mkt"},
                            "max_age": {"marketing": "1 day"}})
    assert passed(gate, batch) == ["1"]
    [warning] = expiry_warnings(gate.ctx.sync)
    assert "max_age cannot be applied" in warning and "granted_at.marketing" in warning


def test_typed_grant_times() -> None:
    """Arrow timestamps (with and without zone), dates and epoch seconds."""
    old, new = dt.datetime(2020, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    for arr in (pa.array([old, new], pa.timestamp("us", tz="UTC")),
                pa.array([old.replace(tzinfo=None), new.replace(tzinfo=None)],
                         pa.timestamp("ms")),
                pa.array([old.date(), new.date()], pa.date32()),
                pa.array([int(old.timestamp()), int(new.timestamp())], pa.int64())):
        batch = pa.RecordBatch.from_arrays([pa.array(["1", "2"]), pa.array([True, True]),
                                            arr], names=["id", "mkt", "mkt_at"])
        gate = gate_for(batch, {"columns": {"marketing": "mkt"},
                                "granted_at": {"marketing": "mkt_at"},
                                "max_age": {"marketing": "P1Y"}})
        assert passed(gate, batch) == ["2"], arr.type


def test_configuration_issues() -> None:
    batch = rows_batch([("1", "yes", None)])
    ctx = make_context(batch.schema, purposes=("marketing",), mapping={"id": "id"},
                       consent={"columns": {"marketing": "mkt"},
                                "max_age": {"marketing": "P1Y", "ads": "P1Y"},
                                "granted_at": {"marketing": "nope", "service": "mkt_at"}})
    paths = sorted(e.path for e in build_gate(ctx).issues())
    assert paths == ["syncs.s.consent.granted_at.marketing",
                     "syncs.s.consent.granted_at.service",
                     "syncs.s.consent.max_age.ads"]


# --- the model against the gate, random inputs -----------------------------------------

PURPOSES = ("marketing", "analytics")
TIMES = ("2024-03-31T12:00:00", "2024-03-31T11:59:59", "2024-03-31T12:00:01",
         "2026-02-28T12:00:00", "2026-01-31T12:00:00Z", "2026-03-30T23:00:00",
         "2025-03-31T12:00:00+02:00", "2026-03-31T12:00:00", None, "garbage")
COLUMN = {"yes": 1, "no": 3, "maybe": 2, None: 0}
STATUS = {"granted": 1, "withdrawn": 3, "maybe": 2, None: 2}


def model(sc: dict[str, Any]) -> tuple[set[str], dict[str, int], dict[str, int]]:
    """The documented rules, in plain Python: who passes, the withheld reasons, and per
    purpose with a max_age how many people expiry withholds."""
    ages, bases = sc["max_age"], sc["bases"]
    # ``suppressed``: nobody here was forgotten (docs/privacy.md).
    passed_ids, reasons = set(), dict.fromkeys(("no_record", "expired", "malformed",
                                                 "denied", "suppressed"), 0)
    by_expiry = dict.fromkeys(ages, 0)
    for sid, value, when in sc["rows"]:
        worst, worst_expired, ok_all = -1, False, True
        for p in sc["purposes"]:
            expired = False
            col = 0
            if p == "marketing":
                col = COLUMN[value]
                if col == 1 and p in ages:
                    t = read_time(when)
                    if t is None:
                        col = 2
                    elif expires(t, ages[p]) < NOW:
                        col, expired = 0, True
            evs = [(s, read_time(t), t) for (subj, pp, s, t) in sc["events"]
                   if subj == sid and pp == p]
            ev = 0
            if evs:
                def order(e: tuple) -> tuple:
                    code = STATUS[e[0]] if e[1] is not None else max(STATUS[e[0]], 2)
                    return (e[1] is None, e[1] or dt.datetime.min, code)
                status, t, _ = max(evs, key=order)
                ev = STATUS[status] if t is not None else max(STATUS[status], 2)
                if ev == 1 and p in ages and expires(t, ages[p]) < NOW:
                    ev, expired = 0, True
            code = max(col, ev)
            ok = code == 1 or (code == 0 and p in bases)
            if not ok and code == 0 and expired and p in ages:
                by_expiry[p] += 1
            if not ok:
                ok_all = False
                if code > worst:
                    worst, worst_expired = code, False
                if code == worst == 0 and expired:
                    worst_expired = True
        if ok_all:
            passed_ids.add(sid)
        else:
            reasons["expired" if worst == 0 and worst_expired else
                    {0: "no_record", 2: "malformed", 3: "denied"}[worst]] += 1
    return passed_ids, reasons, by_expiry


@st.composite
def scenarios(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(0, 12))
    ids = [str(i) for i in range(n)]
    rows = [(i, draw(st.sampled_from(list(COLUMN))), draw(st.sampled_from(TIMES)))
            for i in ids]
    subjects = [*ids, "stranger"]
    events = draw(st.lists(st.tuples(st.sampled_from(subjects), st.sampled_from(PURPOSES),
                                     st.sampled_from(list(STATUS)), st.sampled_from(TIMES)),
                           max_size=30))
    purposes = tuple(draw(st.lists(st.sampled_from(PURPOSES), unique=True, min_size=1)))
    ages = {p: draw(st.sampled_from(sorted(FORMS))) for p in purposes if draw(st.booleans())}
    bases = {p: "contract" for p in purposes if draw(st.booleans())}
    return {"rows": rows, "events": events, "purposes": purposes, "max_age": ages,
            "bases": bases, "batch_rows": draw(st.integers(1, 5))}


@settings(max_examples=examples(120), deadline=None)
@given(scenarios())
def test_gate_follows_the_documented_rules(sc: dict[str, Any]) -> None:
    batch = rows_batch(sc["rows"])
    ev = (events_table(*sc["events"]) if sc["events"] else None)
    consent = {"columns": {"marketing": "mkt"}, "source": "cs",
               "granted_at": {"marketing": "mkt_at"}, "legal_basis": sc["bases"],
               "max_age": sc["max_age"]}
    gate = gate_for(batch, consent, ev, purposes=sc["purposes"])
    got: list[str] = []
    for part in pa.Table.from_batches([batch], batch.schema).to_batches(
            max_chunksize=sc["batch_rows"]):
        got += passed(gate, part)
    want, reasons, _ = model(sc)
    assert sorted(got) == sorted(want)
    assert gate.summary()["withheld_by_reason"] == reasons


# --- the real command line against the model -------------------------------------------

def _cli(monkeypatch: pytest.MonkeyPatch, capsys: Any, *args: str) -> tuple[int, str]:
    code, out, _ = run_cli(monkeypatch, capsys, *args)
    return code, out


def write_project(folder: Path, sc: dict[str, Any]) -> None:
    from tests import fakes

    ids = [r[0] for r in sc["rows"]]
    fakes.TABLES["people"] = (pa.table({
        "id": pa.array(ids, pa.string()),
        "email": pa.array([f"u{i}@example.com" for i in ids], pa.string()),
        "mkt": pa.array([r[1] for r in sc["rows"]], pa.string()),
        "mkt_at": pa.array([r[2] for r in sc["rows"]], pa.string())}), ("id",))
    ev = sc["events"]
    fakes.TABLES["consent"] = (pa.table({
        "customer": pa.array([e[0] for e in ev], pa.string()),
        "purpose": pa.array([e[1] for e in ev], pa.string()),
        "status": pa.array([e[2] for e in ev], pa.string()),
        "at": pa.array([e[3] for e in ev], pa.string())}), ())
    doc = {"version": 1, "state": {"backend": "memory"}, "sources": {"wh": {"type": "memory"}},
           "destinations": {"crm": {"type": "recorder", "purposes": list(sc["purposes"]),
                                    "policies": {"*": "allow"}}},
           "consent_sources": {"cs": {"source": "wh", "stream": "consent",
                                      "subject": "customer", "timestamp": "at"}},
           "syncs": {"people_to_crm": {
               "source": "wh", "stream": "people", "destination": "crm",
               "object": "contacts", "primary_key": "id", "match_key": "email",
               "mapping": {"id": "id", "email": "email"},
               "consent": {"columns": {"marketing": "mkt"}, "source": "cs",
                           "granted_at": {"marketing": "mkt_at"},
                           "legal_basis": sc["bases"], "max_age": sc["max_age"]}}}}
    (folder / "conn.yml").write_text(yaml.safe_dump(doc))


@settings(max_examples=examples(15), deadline=None)
@given(scenarios())
def test_cli_sync_and_check_follow_the_documented_rules(sc: dict[str, Any]) -> None:
    import json
    import tempfile

    from conn.plugins import Registry, reset_registry

    from tests import fakes

    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        fakes.reset()
        reg = Registry(autoload=False)
        reg.add_module(fakes)
        reset_registry(reg)
        mp.chdir(tmp)
        mp.setenv("CONN_NOW", NOW_TEXT)
        write_project(Path(tmp), sc)
        want, reasons, by_expiry = model(sc)
        capsys = _Capture()
        with capsys:
            code, out = _cli(mp, capsys, "check", "--json")
        assert code == 0, out
        checks = [c for c in json.loads(out)["checks"] if c["check"] == "consent expiry"]
        if sc["max_age"]:
            assert checks[0]["withheld_by_expiry"] == by_expiry
            assert checks[0]["rows"] == len(sc["rows"])
            assert checks[0]["now"] == "2026-03-31T12:00:00Z"
        else:
            assert checks == []
        with capsys:
            code, out = _cli(mp, capsys, "sync", "wh", "crm", "--json")
        assert code == 0, out
        rep = json.loads(out)["syncs"][0]
        assert rep["consent"]["withheld_by_reason"] == reasons
        got = [r["id"] for _, _, recs in fakes.RECEIVED for r in recs]
        assert sorted(got) == sorted(want)
        reset_registry(Registry(autoload=False))


class _Capture:
    """stdout of one command (hypothesis cannot use the function-scoped capsys)."""

    def __enter__(self) -> _Capture:
        import io
        import sys

        self._old, self._buf = sys.stdout, io.StringIO()
        sys.stdout = self._buf
        return self

    def __exit__(self, *exc: object) -> None:
        import sys

        sys.stdout = self._old

    def readouterr(self) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(out=self._buf.getvalue(), err="")


def test_cli_check_plain_output_and_warning(tmp_path: Path, registry: Any,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: Any) -> None:
    sc = {"rows": [("1", "yes", "2020-01-01T00:00:00"), ("2", "yes", "2026-03-01T00:00:00")],
          "events": [], "purposes": ("marketing",), "max_age": {"marketing": "24 months"},
          "bases": {}}
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path, sc)
    code, out = _cli(monkeypatch, capsys, "check")
    assert code == 0
    assert "marketing: expiry withholds 1 of 2 people (max_age 24 months)" in out
    text = (tmp_path / "conn.yml").read_text().replace("granted_at:", "unused_at:")
    doc = yaml.safe_load(text)
    del doc["syncs"]["people_to_crm"]["consent"]["unused_at"]
    (tmp_path / "conn.yml").write_text(yaml.safe_dump(doc))
    code, out = _cli(monkeypatch, capsys, "check")
    assert code == 0
    assert "marketing: expiry withholds 0 of 2 people" in out
    assert "warning: syncs.people_to_crm.consent.max_age.marketing: max_age cannot be " \
           "applied to consent column 'mkt'" in out
    code, out = _cli(monkeypatch, capsys, "check", "--offline", "--json")
    import json

    [entry] = [c for c in json.loads(out)["checks"] if c["check"] == "consent expiry"]
    assert entry["note"] == "not read (offline)" and len(entry["warnings"]) == 1
