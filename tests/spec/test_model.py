"""The model against the text it was written from: when docs/consent.md changes, the model
must follow (and the differential test then holds the code to it)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.spec import model

DOCS = Path(__file__).resolve().parents[2] / "docs"


def table_row(label: str) -> set[str]:
    """The string values of one row of consent.md's "Consent values" table."""
    text = (DOCS / "consent.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith(f"| `{label}` |"))
    return set(re.findall(r"`([^`]*)`", line.split("|")[2]))


def test_consent_values_are_the_documented_table() -> None:
    assert table_row("granted") == model.GRANT_STRINGS
    assert table_row("denied") == model.DENY_STRINGS


def test_value_codes() -> None:
    assert model.value_code(" YES ") is model.Code.GRANTED
    assert model.value_code("Opt-Out") is model.Code.DENIED
    assert model.value_code("") is model.Code.MALFORMED
    assert model.value_code("opt-in") is model.Code.MALFORMED
    assert model.value_code(None) is model.Code.NO_RECORD
    assert model.value_code(True) is model.Code.GRANTED
    assert model.value_code(0) is model.Code.DENIED
    assert model.value_code(7) is model.Code.MALFORMED


def test_events_latest_wins_ties_restrict_missing_time_denies() -> None:
    e = model.ConsentEvent
    assert model.events_code([e(1, "m", "no", 1), e("1", "m", "yes", 2)], 1, "m") \
        is model.Code.GRANTED
    assert model.events_code([e(1, "m", "yes", 2), e(1, "m", "maybe", 2)], 1, "m") \
        is model.Code.MALFORMED
    assert model.events_code([e(1, "m", "yes", 2), e(1, "m", "yes", None)], 1, "m") \
        is model.Code.DENIED
    assert model.events_code([e(1, "m", None, 2)], 1, "m") is model.Code.MALFORMED
    assert model.events_code([e(1, "s", "no", 2)], 1, "m") is model.Code.NO_RECORD


def test_gate_legal_basis_only_without_a_record() -> None:
    cfg = model.ConsentConfig(("m",), {"m": "c"}, False, {"m": "contract"})
    assert model.gate({"c": None}, 1, cfg, []).bases == {"m": "contract"}
    assert not model.gate({"c": "maybe"}, 1, cfg, []).passes
    assert not model.gate({"c": False}, 1, cfg, []).passes
