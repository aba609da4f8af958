"""Consent value parsing, identifier normalisation and hashing (known SHA-256 vectors)."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pytest
from conn.consent import normalize as n
from conn.consent.values import DENIED, GRANTED, MALFORMED, NO_RECORD, classify
from conn.digests import md5_hex, sha256_hex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import examples


def test_classify_strings() -> None:
    arr = pa.array(["granted", " YES ", "opt_out", "revoked", "maybe", "", None, "1"])
    assert classify(arr).tolist() == [GRANTED, GRANTED, DENIED, DENIED, MALFORMED,
                                      MALFORMED, NO_RECORD, GRANTED]


def test_classify_bool_int_and_other_types() -> None:
    assert classify(pa.array([True, False, None])).tolist() == [GRANTED, DENIED, NO_RECORD]
    assert classify(pa.array([1, 0, 7, None])).tolist() == [GRANTED, DENIED, MALFORMED,
                                                           NO_RECORD]
    assert classify(pa.array([1.0, 0.5])).tolist() == [GRANTED, MALFORMED]
    assert classify(pa.array([b"x", None], pa.binary())).tolist() == [MALFORMED, NO_RECORD]
    chunked = pa.chunked_array([["yes"], ["no"]])
    assert classify(chunked).tolist() == [GRANTED, DENIED]


VECTORS = {
    "test@example.com": "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b",
    "16505551234": "6069d14bf122fdfd931dc7beb58e5dfbba395b1faf05bdcd42d12358d63d8599",
    "+16505551234": "a2996076d3ad4af5dc818b908b3d8e354f26ededf7df0e0aa6ac354143805ee0",
    "442079460958": "35e206e5dec4c89b9e8b71b8c32724a5bb518483ac5a20c6617d738375b3b823",
    "john": "96d9632f363564cc3032521409cf22a852f2032eec099ed5967c0d000cec607a",
    "maryann": "16b3f07f0ec2f9dd127b71dc2e6c791b7d93116a1c3bc99d057eaa7a8a077e73",
    "m": "62c66a7a5dd70c3146618063c344e531e6d4b59e379808443ce962b3abd63c5a",
    "94025": "b9a9cf3cd3723a2e91b7c23ecf68456e872b6e5d86e5cab7f3d45a7302da32c7",
    "us": "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621",
}


@pytest.fixture(params=["compiled", "duckdb"])
def sha_path(request, monkeypatch):
    """SHA-256 through conn-speedups' kernel, and through DuckDB."""
    from conn.state.planner import kernels

    monkeypatch.setenv("CONN_SPEEDUPS", "1" if request.param == "compiled" else "0")
    kernels.reset()
    if request.param == "compiled" and not kernels.available():
        pytest.skip("conn-speedups is not installed")
    yield request.param
    kernels.reset()


@settings(max_examples=examples(50), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # set once per path
@given(texts=st.lists(st.none() | st.text(max_size=150), max_size=30), start=st.integers(0, 5))
def test_sha256_equals_hashlib_on_any_text(sha_path, texts, start) -> None:
    arr = pa.array([None] * start + texts, pa.string()).slice(start)
    assert sha256_hex(arr).to_pylist() == [
        None if t is None else hashlib.sha256(t.encode()).hexdigest() for t in texts]


def test_sha256_matches_known_vectors_and_hashlib(sha_path) -> None:
    keys = list(VECTORS)
    out = sha256_hex(pa.array([*keys, None])).to_pylist()
    assert out[:-1] == [VECTORS[k] for k in keys]
    assert out[-1] is None
    assert md5_hex(pa.array(["a"])).to_pylist() == [hashlib.md5(b"a").hexdigest()]
    assert sha256_hex(pa.array([], pa.string())).to_pylist() == []
    assert sha256_hex(pa.array([12])).to_pylist() == [hashlib.sha256(b"12").hexdigest()]


@pytest.mark.parametrize(("kind", "raw", "opts", "normalised"), [
    ("email", "  Test@Example.COM ", {}, "test@example.com"),
    ("phone", "+1 (650) 555-1234", {}, "16505551234"),
    ("phone", "(650) 555-1234", {"country_code": "1"}, "16505551234"),
    ("phone", "0650 555 1234", {"country_code": "+1"}, "16505551234"),
    ("phone", "0044 20 7946 0958", {"country_code": "1"}, "442079460958"),
    ("phone", "+44 (0)20 7946 0958", {}, "442079460958"),
    ("phone", "+1 650 555 1234", {"phone_format": "e164"}, "+16505551234"),
    ("phone", "---", {"country_code": "1"}, None),
    ("name", " John ", {}, "john"),
    ("name", "Mary-Ann", {}, "maryann"),
    ("first_name", "Ana-María O'Neil", {}, "anamaríaoneil"),
    ("gender", "Male", {}, "m"),
    ("zip", "94025-1234", {}, "94025"),
    ("zip", "SW1A 1AA", {}, "sw1a1aa"),
    ("country", "US", {}, "us"),
    ("city", "New York", {}, "newyork"),
    ("dob", "1990-02-03", {}, "19900203"),
    # Meta's DOBY/DOBM/DOBD/FI as facebook-business normalises them (month and day
    # "1" -> "01"; "M." -> "m"): the plugin's tests compare with the SDK itself.
    ("dob_year", " 1990 ", {}, "1990"),
    ("dob_month", "1", {}, "01"),
    ("dob_month", "12", {}, "12"),
    ("dob_day", " 7.", {}, "07"),
    ("dob_day", "--", {}, None),
    ("first_initial", "M.", {}, "m"),
    ("first_initial", " j ", {}, "j"),
    ("first_initial", "..", {}, None),
    ("address", "  1 Main   St ", {}, "1 main st"),
    ("ip", " 10.0.0.1 ", {}, "10.0.0.1"),
    ("other", "  MiXed ", {}, "mixed"),
    ("raw", " Keep ", {}, " Keep "),
    ("email", "   ", {}, None),
])
def test_normalisation_rules(kind: str, raw: str, opts: dict, normalised: str | None) -> None:
    assert n.normalize(pa.array([raw, None]), kind, **opts).to_pylist() == [normalised, None]


@pytest.mark.parametrize(("kind", "raw", "digest"), [
    ("email", " Test@Example.com", VECTORS["test@example.com"]),
    ("phone", "+1 (650) 555-1234", VECTORS["16505551234"]),
    ("name", "JOHN", VECTORS["john"]),
    ("gender", "M", VECTORS["m"]),
    ("zip", "94025-0001", VECTORS["94025"]),
    ("country", "US", VECTORS["us"]),
])
def test_normalise_then_hash_vectors(kind: str, raw: str, digest: str) -> None:
    assert sha256_hex(n.normalize(pa.array([raw]), kind)).to_pylist() == [digest]


def test_google_phone_e164_vector() -> None:
    out = sha256_hex(n.phone(pa.array(["(650) 555-1234"]), country_code="1",
                             phone_format="e164"))
    assert out.to_pylist() == [VECTORS["+16505551234"]]


def test_dob_from_date_type() -> None:
    import datetime as dt

    assert n.dob(pa.array([dt.date(1990, 2, 3)])).to_pylist() == ["19900203"]
    day = pa.array([dt.date(1990, 2, 3)])
    assert [n.normalize(day, k).to_pylist()[0] for k in ("dob_year", "dob_month", "dob_day")] \
        == ["1990", "02", "03"]
    assert n.dob_month(pa.array([1, 11], pa.int64())).to_pylist() == ["01", "11"]


def test_mask() -> None:
    assert n.mask(pa.array(["john@example.com", "x", None]), "email").to_pylist() == [
        "j***@example.com", "***", None]
    assert n.mask(pa.array(["0612345678", "abc", None])).to_pylist() == ["***78", "***", None]


def test_duckdb_results_stay_aligned_on_large_arrays() -> None:
    """DuckDB scans large arrays in parallel; results must keep the input's row order."""
    import numpy as np
    from conn.duckdb_scan import sql_over

    arr = pa.array(np.arange(400_000).astype(str))
    digests = sha256_hex(arr)
    for i in np.random.default_rng(1).integers(0, len(arr), 200):
        assert digests[int(i)].as_py() == hashlib.sha256(str(i).encode()).hexdigest()
    echoed = sql_over(arr, "v || ''")
    assert echoed.equals(arr)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(["", " ", "a", "Ab "]), st.text(max_size=6)),
                max_size=30),
       st.integers(0, 5), st.integers(0, 5))
def test_blank_strings_become_null_on_any_slice(values, start, cut) -> None:
    """Blank detection reads the offsets: right with nulls, empty strings and slices."""
    from conn.consent.normalize import _blank_to_null

    arr = pa.array(values, pa.string())
    arr = arr.slice(min(start, len(arr)), max(0, len(arr) - start - cut))
    got = _blank_to_null(arr).to_pylist()
    assert got == [None if v == "" else v for v in arr.to_pylist()]
