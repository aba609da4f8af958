"""Consent values: docs/consent.md's table is the code's table, and only its grant
spellings grant (a value that is not plainly a grant is withheld)."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
from conn.consent.values import DENIED, GRANTED, MALFORMED, REASONS, VALUES, classify
from hypothesis import given
from hypothesis import strategies as st

DOC = Path(__file__).resolve().parents[2] / "docs" / "consent.md"


def documented_values() -> dict[str, str]:
    """token -> reason, read from the Markdown table under **Consent values.** in the
    docs (parsed here on its own, not rendered from the code)."""
    text = DOC.read_text()
    section = text[text.index("**Consent values.**"):text.index("**Timestamps**")]
    out: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        reason = cells[0].strip("`")
        for token in re.findall(r"`([^`]*)`", cells[1]):
            assert token not in out, f"{token!r} listed twice in {DOC.name}"
            out[token] = reason
    return out


def test_docs_table_equals_the_code_table() -> None:
    documented = documented_values()
    code = {k: REASONS[v] for k, v in VALUES.items()}
    assert documented == code, (
        "docs/consent.md's consent values differ from conn.consent.values.VALUES; "
        "paste conn.consent.values.markdown_table() into the docs")


def test_values_that_are_not_plainly_grants_are_malformed_and_refusals_denied() -> None:
    # These read as grants once, though the docs never listed them.
    assert classify(pa.array(["opt-in", "opted-in", "accept", "Opt-In "])).tolist() == \
        [MALFORMED] * 4
    assert classify(pa.array(["opt-out", "withdraw", "decline", " OPTED-OUT"])).tolist() \
        == [DENIED] * 4


GRANTS = sorted(k for k, v in documented_values().items() if v == "granted")
ANY = sorted(documented_values())


@given(st.one_of(
    st.tuples(st.sampled_from(ANY), st.sampled_from(["", " ", "  ", "\t"]),
              st.sampled_from(["", " ", "\t"]), st.booleans()).map(
        lambda t: t[1] + (t[0].upper() if t[3] else t[0]) + t[2]),
    st.text(st.characters(codec="ascii", categories=["L", "N", "P", "Zs"]), max_size=12),
    st.sampled_from(ANY).map(lambda s: s.replace("_", "-")),
    st.sampled_from(ANY).map(lambda s: s + "s"),
))
def test_only_documented_grant_spellings_grant(value: str) -> None:
    """The documented rule as a plain model: a string grants exactly when, trimmed and
    lowercased, it is one of the documented grant values."""
    got = classify(pa.array([value])).tolist()[0]
    assert (got == GRANTED) == (value.strip(" \t").lower() in GRANTS), value
