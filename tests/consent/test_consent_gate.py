"""The consent gate: columns, consent sources, legal bases, combination, summary."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from conn.consent import build_gate
from conn.errors import ConfigError
from conn.testing.sandbox import make_context

ROWS = pa.RecordBatch.from_pylist([
    {"id": "1", "email": "a@x.com", "mkt": "yes"},
    {"id": "2", "email": "b@x.com", "mkt": "no"},
    {"id": "3", "email": "c@x.com", "mkt": "maybe"},
    {"id": "4", "email": "d@x.com", "mkt": None},
])
KEYS = ROWS.column("id")


def events(*rows: tuple) -> pa.Table:
    subj, purpose, status, ts = zip(*rows, strict=True) if rows else ((), (), (), ())
    return pa.table({"customer": pa.array(subj, pa.string()),
                     "purpose": pa.array(purpose, pa.string()),
                     "status": pa.array(status, pa.string()),
                     "at": pa.array(ts, pa.string())})


def ctx_for(purposes=("marketing",), consent=None, ev=None, **kw):
    src = {"cs": {"source": "src", "stream": "ev", "subject": "customer", "timestamp": "at"}}
    return make_context(ROWS.schema, purposes=purposes, consent=consent,
                        mapping={"id": "id", "email": "email"}, consent_sources=src,
                        events={"ev": ev if ev is not None else events()}, **kw)


def ids(gated) -> list[str]:
    return gated.keys.to_pylist()


def test_column_consent_and_reasons() -> None:
    gate = build_gate(ctx_for(consent={"columns": {"marketing": "mkt"}}))
    gated = gate.apply(ROWS, KEYS)
    assert ids(gated) == ["1"]
    assert gated.withheld == 3
    s = gate.summary()
    assert s["withheld_by_reason"] == {"no_record": 1, "expired": 0, "malformed": 1,
                                       "denied": 1, "suppressed": 0}
    assert s["per_purpose"]["marketing"]["passed"] == 1
    assert s["legal_bases"] == {"marketing": {"consent": 1}}
    assert gated.batch.schema.names == ["id", "email"]  # consent column not passed on


def test_latest_event_wins_and_late_revocation() -> None:
    ev = events(("1", "marketing", "granted", "2024-01-01T00:00:00"),
                ("1", "marketing", "revoked", "2024-02-01T00:00:00"),
                ("2", "marketing", "denied", "2024-01-01"),
                ("2", "marketing", "granted", "2024-03-01"),
                ("3", "marketing", "granted", "2024-01-01"))
    gate = build_gate(ctx_for(consent={"source": "cs"}, ev=ev))
    assert ids(gate.apply(ROWS, KEYS)) == ["2", "3"]
    assert gate.summary()["withheld_by_reason"] == {"no_record": 1, "expired": 0,
                                                    "malformed": 0, "denied": 1,
                                                    "suppressed": 0}


def test_tie_on_timestamp_denial_wins_and_bad_timestamp_blocks() -> None:
    ev = events(("1", "marketing", "granted", "2024-01-01"),
                ("1", "marketing", "denied", "2024-01-01"),
                ("2", "marketing", "granted", "2024-01-01"),
                ("2", "marketing", "granted", "not a date"),
                ("3", "marketing", "granted", "2024-01-01"),
                ("3", "marketing", "maybe", "2024-01-01"),
                ("4", "marketing", "granted", "2024-01-01T10:00:00+02:00"))
    gate = build_gate(ctx_for(consent={"source": "cs"}, ev=ev))
    assert ids(gate.apply(ROWS, KEYS)) == ["4"]
    assert gate.summary()["withheld_by_reason"] == {"no_record": 0, "expired": 0,
                                                    "malformed": 2, "denied": 1,
                                                    "suppressed": 0}


def test_timezones_order_events() -> None:
    ev = events(("1", "marketing", "granted", "2024-01-01T10:00:00+00:00"),
                ("1", "marketing", "denied", "2024-01-01T11:00:00+02:00"))  # 09:00 UTC
    gate = build_gate(ctx_for(consent={"source": "cs"}, ev=ev))
    assert ids(gate.apply(ROWS, KEYS)) == ["1"]


def test_typed_timestamps_and_integer_subjects() -> None:
    ev = pa.table({"customer": [1, 1, 2], "purpose": ["marketing"] * 3,
                   "status": [True, False, True],
                   "at": [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2),
                          dt.datetime(2024, 1, 1)]})
    gate = build_gate(ctx_for(consent={"source": "cs"}, ev=ev))
    assert ids(gate.apply(ROWS, KEYS)) == ["2"]


def test_combined_denial_anywhere_wins() -> None:
    ev = events(("1", "marketing", "denied", "2024-01-01"),   # column yes, event no
                ("4", "marketing", "granted", "2024-01-01"),  # column null, event yes
                ("2", "marketing", "granted", "2024-01-01"))  # column no, event yes
    gate = build_gate(ctx_for(consent={"source": "cs", "columns": {"marketing": "mkt"}},
                              ev=ev))
    assert ids(gate.apply(ROWS, KEYS)) == ["4"]


def test_every_purpose_required_and_legal_basis() -> None:
    ev = events(("1", "analytics", "granted", "2024-01-01"),
                ("2", "analytics", "denied", "2024-01-01"))
    gate = build_gate(ctx_for(
        purposes=("marketing", "analytics"),
        consent={"columns": {"marketing": "mkt"}, "source": "cs",
                 "legal_basis": {"analytics": "legitimate_interests"}}, ev=ev))
    # analytics: 1 granted, 2 denied (basis never overrides a denial), 3/4 by basis;
    # marketing: only 1 -> only 1 passes.
    assert ids(gate.apply(ROWS, KEYS)) == ["1"]
    s = gate.summary()
    assert s["per_purpose"]["analytics"]["passed"] == 3
    assert s["per_purpose"]["analytics"]["withheld"]["denied"] == 1
    gate2 = build_gate(ctx_for(purposes=("analytics",), consent={
        "source": "cs", "legal_basis": {"analytics": "contract"}}, ev=ev))
    assert ids(gate2.apply(ROWS, KEYS)) == ["1", "3", "4"]
    assert gate2.summary()["legal_bases"] == {"analytics": {"consent": 1, "contract": 2}}


def test_event_legal_basis_column_counts() -> None:
    ev = events(("1", "marketing", "granted", "2024-01-01"))
    ev = ev.append_column("basis", pa.array(["consent_form"]))
    src = {"cs": {"source": "src", "stream": "ev", "subject": "customer", "timestamp": "at",
                  "legal_basis": "basis", "jurisdiction": "purpose"}}
    ctx = make_context(ROWS.schema, purposes=("marketing",), consent={"source": "cs"},
                       mapping={"id": "id"}, consent_sources=src, events={"ev": ev})
    gate = build_gate(ctx)
    gate.apply(ROWS, KEYS)
    assert gate.summary()["legal_bases"] == {"marketing": {"consent_form": 1}}
    assert gate.index is not None
    rec = gate.index.records("1")
    assert rec[0]["decision"] == "granted" and rec[0]["legal_basis"] == "consent_form"


def test_subject_column_differs_from_key() -> None:
    ev = events(("a@x.com", "marketing", "granted", "2024-01-01"))
    gate = build_gate(ctx_for(consent={"source": "cs", "subject": "email"}, ev=ev))
    assert ids(gate.apply(ROWS, KEYS)) == ["1"]


def test_no_purposes_passes_everything() -> None:
    gate = build_gate(ctx_for(purposes=()))
    assert gate.apply(ROWS, KEYS).withheld == 0


def test_sync_narrows_purposes() -> None:
    ctx = ctx_for(purposes=("marketing", "advertising"), sync_purposes=("marketing",),
                  consent={"columns": {"marketing": "mkt"}})
    assert ids(build_gate(ctx).apply(ROWS, KEYS)) == ["1"]


def test_missing_event_columns_and_issues() -> None:
    src = {"cs": {"source": "src", "stream": "ev", "subject": "who"}}
    ctx = make_context(ROWS.schema, purposes=("marketing",), consent={"source": "cs"},
                       consent_sources=src, events={"ev": events()})
    with pytest.raises(ConfigError) as exc:
        build_gate(ctx)
    assert "consent_sources.cs" in str(exc.value)
    ctx = ctx_for(purposes=("marketing", "sales"), consent={
        "columns": {"marketing": "nope"}, "subject": "missing",
        "legal_basis": {"other": "contract"}})
    paths = [e.path for e in build_gate(ctx).issues()]
    assert paths == ["syncs.s.consent.columns.marketing", "syncs.s.consent.subject",
                     "syncs.s.consent", "syncs.s.consent.legal_basis.other"]


def test_empty_batch_and_empty_events() -> None:
    gate = build_gate(ctx_for(consent={"source": "cs"}))
    empty = ROWS.slice(0, 0)
    assert gate.apply(empty, KEYS.slice(0, 0)).batch.num_rows == 0
    assert gate.apply(ROWS, KEYS).withheld == 4


def test_large_event_lookup_is_exact() -> None:
    n = 20_000
    subj = [str(i) for i in range(n)]
    ev = pa.table({"customer": subj, "purpose": ["marketing"] * n,
                   "status": ["granted" if i % 3 else "denied" for i in range(n)],
                   "at": ["2024-01-01"] * n})
    rows = pa.RecordBatch.from_pydict({"id": [str(i) for i in range(-5, n + 5)],
                                       "email": ["x@y.z"] * (n + 10),
                                       "mkt": ["yes"] * (n + 10)})
    ctx = make_context(rows.schema, purposes=("marketing",), consent={"source": "cs"},
                       mapping={"id": "id"}, events={"ev": ev}, consent_sources={
                           "cs": {"source": "s", "stream": "ev", "subject": "customer",
                                  "timestamp": "at"}})
    gated = build_gate(ctx).apply(rows, rows.column("id"))
    expected = [str(i) for i in range(n) if i % 3]
    assert gated.keys.to_pylist() == expected
