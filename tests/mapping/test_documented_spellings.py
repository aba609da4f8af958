"""The text spellings docs/consent.md ("Coercion", "Masks") says convert, and the mask forms
it names, checked value by value against the documented lists."""

from __future__ import annotations

import pyarrow as pa
import pytest
from conn.consent.normalize import mask
from conn.mapping.coerce import cast_named

CONVERT = {
    "integer": {" 42 ": 42, "-7": -7, "+3": 3, "123456789012345678": 123456789012345678},
    "number": {"1": 1.0, "-2.5": -2.5, "+.5": 0.5, "1e3": 1000.0, "7.": 7.0, " 3 ": 3.0},
    "boolean": {"true": True, "T": True, "Yes": True, "y": True, "1": True,
                "FALSE": False, "f": False, "no": False, "N": False, "0": False},
}
REFUSE = {
    "integer": ["1.5", "1e3", "1234567890123456789", "0x10", "", "one"],
    "number": ["nan", "NaN", "inf", "-Infinity", "1,5", "0x10", "", "1e", "."],
    "boolean": ["2", "on", "off", "ja", ""],
}


@pytest.mark.parametrize("name", sorted(CONVERT))
def test_documented_spellings_convert(name: str) -> None:
    texts = list(CONVERT[name])
    out, failed = cast_named(pa.array(texts), name)
    assert out.to_pylist() == [CONVERT[name][t] for t in texts]
    assert not failed.any()


@pytest.mark.parametrize("name", sorted(REFUSE))
def test_other_spellings_reject_the_row(name: str) -> None:
    out, failed = cast_named(pa.array(REFUSE[name]), name)
    assert out.null_count == len(REFUSE[name])
    assert failed.all()


def test_dates_and_timestamps_in_the_three_documented_forms() -> None:
    texts = ["2024-03-01", "2024-03-01 10:20:30", "2024-03-01T10:20:30", "01/03/2024"]
    out, failed = cast_named(pa.array(texts), "datetime")
    assert [v.isoformat() if v else None for v in out.to_pylist()] == [
        "2024-03-01T00:00:00", "2024-03-01T10:20:30", "2024-03-01T10:20:30", None]
    assert failed.tolist() == [False, False, False, True]


def test_masks_depend_on_the_kind() -> None:
    values = pa.array(["jane@example.com", "nobody", "12345678", "1234", None])
    assert mask(values, "email").to_pylist() == [
        "j***@example.com", "***", "***", "***", None]
    assert mask(values, "phone").to_pylist() == ["***om", "***dy", "***78", "***", None]
