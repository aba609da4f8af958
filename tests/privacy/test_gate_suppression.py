"""The consent gate withholds suppressed people (reason ``suppressed``) by any identity
value: primary key, consent subject, a column mapped to an identifier field; e-mail
addresses whatever their case and blanks. An empty list leaves the gate as it was."""

from __future__ import annotations

import pyarrow as pa
from conn.consent import build_gate
from conn.privacy.identifiers import digests, new_salt
from conn.privacy.suppression import Suppression
from conn.testing.sandbox import make_context

ROWS = pa.RecordBatch.from_pylist([
    {"id": 1, "email": "Ana@X.org", "cust": "c-1", "note": "bo@x.org"},
    {"id": 2, "email": "bo@x.org", "cust": "c-2", "note": None},
    {"id": 3, "email": "cy@x.org", "cust": "c-3", "note": "ana@x.org"},
    {"id": 4, "email": " DI@x.org", "cust": "c-4", "note": None},
])
KEYS = pa.array(["1", "2", "3", "4"])


def gate_for(listed: list[str], **kw):
    salt = new_salt()
    hashed = digests(pa.array(listed, pa.string()), salt).to_pylist()
    ctx = make_context(ROWS.schema, mapping={"id": "id", "email": "email", "note": "note"},
                       identifiers=("email", "id"), match_key="email", **kw)
    ctx.suppression = Suppression(salt, hashed)
    return build_gate(ctx)


def test_by_identifier_column_any_case():
    gate = gate_for(["ana@x.org", "di@x.org"])
    gated = gate.apply(ROWS, KEYS)
    # Row 3 only mentions the address in a column that is no identifier: it passes.
    assert gated.keys.to_pylist() == ["2", "3"]
    s = gate.summary()
    assert s["withheld_by_reason"]["suppressed"] == 2
    assert s["withheld"] == 2


def test_by_primary_key_and_consent_subject():
    gate = gate_for(["2", "c-3"], consent={"subject": "cust", "legal_basis": {}})
    assert gate.apply(ROWS, KEYS).keys.to_pylist() == ["1", "4"]


def test_suppressed_wins_over_a_consent_reason():
    gate = gate_for(["bo@x.org"], purposes=("marketing",))
    gated = gate.apply(ROWS, KEYS)
    assert gated.keys.to_pylist() == []
    reasons = gate.summary()["withheld_by_reason"]
    assert reasons == {"no_record": 3, "expired": 0, "malformed": 0, "denied": 0,
                       "suppressed": 1}


def test_an_empty_list_withholds_nobody_and_hashes_nothing(monkeypatch):
    import conn.privacy.suppression as sup

    def boom(*_a, **_k):
        raise AssertionError("hashed with an empty list")

    monkeypatch.setattr(sup, "digests", boom)
    ctx = make_context(ROWS.schema, mapping={"id": "id", "email": "email"},
                       identifiers=("email",), match_key="email")
    for listed in (None, Suppression()):
        ctx.suppression = listed
        gate = build_gate(ctx)
        assert gate.apply(ROWS, KEYS).keys.to_pylist() == ["1", "2", "3", "4"]
        assert gate.summary()["withheld_by_reason"]["suppressed"] == 0


def test_only_unique_values_are_hashed(monkeypatch):
    import conn.privacy.suppression as sup

    seen: list[int] = []
    real = sup.digests

    def counting(values, salt):
        seen.append(len(values))
        return real(values, salt)

    monkeypatch.setattr(sup, "digests", counting)
    rows = pa.RecordBatch.from_pylist([{"id": i % 3, "email": "same@x.org"}
                                       for i in range(300)])
    salt = new_salt()
    ctx = make_context(rows.schema, mapping={"id": "id", "email": "email"},
                       identifiers=("email",), match_key="email")
    ctx.suppression = Suppression(salt, digests(pa.array(["1"]), salt).to_pylist())
    gate = build_gate(ctx)
    gated = gate.apply(rows, pa.array([str(i % 3) for i in range(300)]))
    assert gated.batch.num_rows == 200
    assert seen == [4]  # "0", "1", "2" and the one address


def test_digests_sharing_their_first_64_bits_are_told_apart(monkeypatch):
    import conn.privacy.suppression as sup

    monkeypatch.setattr(sup, "digests", lambda values, salt: values)  # values are digests
    same = "a" * 16
    listed = [same + "0" * 48, same + "1" * 48, "b" * 64]
    s = Suppression(b"salt", listed)
    values = pa.array([same + "1" * 48, same + "2" * 48, "b" * 64, "c" * 64, same + "0" * 48])
    assert s.listed_values(values).to_pylist() == [same + "1" * 48, "b" * 64,
                                                   same + "0" * 48]
