"""Reading consent values: every column or event status becomes one of four codes.

The codes are ordered by severity so that combining several answers for the same subject
and purpose is a ``max``: a denial anywhere wins over a grant, a grant wins over silence.

=========  =====  ===========================================================
code       value  meaning
=========  =====  ===========================================================
NO_RECORD  0      nothing known (null value, no event): denied unless a legal
                  basis other than consent is declared for the purpose
GRANTED    1      consent given
MALFORMED  2      a value we cannot read ("maybe", 7, an unparsable timestamp):
                  always a denial, reported with its own reason
DENIED     3      consent refused or withdrawn
=========  =====  ===========================================================
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NO_RECORD, GRANTED, MALFORMED, DENIED = 0, 1, 2, 3

#: Reason names used in summaries and ``conn explain``, by code.
REASONS = {NO_RECORD: "no_record", GRANTED: "granted", MALFORMED: "malformed",
           DENIED: "denied"}

#: The one table of textual consent values, compared trimmed and lowercased. It leans
#: toward withholding: only these spellings grant; a value that is not plainly a grant
#: ("opt-in", "accept", "maybe") is never one and reads as malformed. Refusals are listed
#: generously, since a refusal and an unreadable value are both withheld and the table
#: only decides which reason is reported. docs/consent.md shows this table (a test
#: parses it and compares); :func:`markdown_table` renders it.
VALUES: dict[str, int] = {
    **dict.fromkeys(("granted", "grant", "given", "true", "t", "yes", "y", "1", "opt_in",
                     "opted_in", "optin", "subscribed", "allow", "allowed", "accepted",
                     "consented"), GRANTED),
    **dict.fromkeys(("denied", "deny", "false", "f", "no", "n", "0", "opt_out", "opt-out",
                     "opted_out", "opted-out", "optout", "unsubscribed", "revoked",
                     "withdrawn", "withdraw", "declined", "decline", "refused", "rejected",
                     "disallowed"), DENIED),
}
GRANTED_TOKENS = tuple(k for k, v in VALUES.items() if v == GRANTED)
DENIED_TOKENS = tuple(k for k, v in VALUES.items() if v == DENIED)

_GRANTED = pa.array(GRANTED_TOKENS)
_DENIED = pa.array(DENIED_TOKENS)


def classify(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Consent codes (int8 numpy array) for a column of consent values.

    Booleans: true grants, false denies. Numbers: 1 grants, 0 denies, anything else is
    malformed. Strings: the tokens above (case and surrounding blanks ignored); any other
    string, including the empty string, is malformed. Null is ``NO_RECORD``. Other Arrow
    types are malformed wherever not null. Vectorised; no Python loop per row."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    n = len(values)
    t = values.type
    null = pc.is_null(values)
    if pa.types.is_boolean(t):
        granted, denied = pc.fill_null(values, False), pc.fill_null(pc.invert(values), False)
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        granted = pc.fill_null(pc.equal(values, pa.scalar(1).cast(t)), False)
        denied = pc.fill_null(pc.equal(values, pa.scalar(0).cast(t)), False)
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        if pa.types.is_dictionary(t):
            values = values.cast(pa.string())
        norm = pc.utf8_lower(pc.utf8_trim_whitespace(values.cast(pa.string())))
        granted = pc.is_in(norm, value_set=_GRANTED)
        denied = pc.is_in(norm, value_set=_DENIED)
    else:
        codes = np.full(n, MALFORMED, dtype=np.int8)
        codes[_np_bool(null)] = NO_RECORD
        return codes
    codes = np.full(n, MALFORMED, dtype=np.int8)
    codes[_np_bool(granted)] = GRANTED
    codes[_np_bool(denied)] = DENIED
    codes[_np_bool(null)] = NO_RECORD
    return codes


def _np_bool(arr: pa.Array) -> np.ndarray:
    """A boolean Arrow array without nulls as a numpy bool array."""
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def markdown_table() -> str:
    """The string values of :data:`VALUES` as the Markdown table docs/consent.md shows."""
    rows = ["| read as | string values (case and surrounding blanks ignored) |", "|---|---|"]
    for code in (GRANTED, DENIED):
        tokens = ", ".join(f"`{k}`" for k, v in VALUES.items() if v == code)
        rows.append(f"| `{REASONS[code]}` | {tokens} |")
    rows.append(f"| `{REASONS[NO_RECORD]}` | null |")
    rows.append(f"| `{REASONS[MALFORMED]}` | any other string, the empty string included |")
    return "\n".join(rows) + "\n"
