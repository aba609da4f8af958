"""Field policies: tags from three places, precedence, actions, advertising rule."""

from __future__ import annotations

import hashlib

import pyarrow as pa
from conn.consent import build_gate
from conn.mapping import build_mapper
from conn.testing.sandbox import make_context
from hypothesis import given
from hypothesis import strategies as st

ROWS = pa.RecordBatch.from_pylist([
    {"id": "1", "email": " Ann@X.com ", "phone": "+1 650 555 1234", "city": "Paris",
     "ip": "10.0.0.1", "score": 3},
])
KEYS = ROWS.column("id")
ALL = {"id": "id", "email": "email", "phone": "phone", "city": "city", "ip": "ip",
       "score": "score"}


def sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def gate_out(**kw) -> dict:
    ctx = make_context(ROWS.schema, mapping=kw.pop("mapping", ALL), **kw)
    return build_gate(ctx).apply(ROWS, KEYS).batch.to_pylist()[0]


def test_allow_drop_hash_mask_by_kind() -> None:
    out = gate_out(personal={"email": "email", "phone": "phone", "city": "city", "ip": "ip"},
                   policies={"email": "hash", "phone": "hash", "city": "mask", "ip": "drop"},
                   mapping={k: v for k, v in ALL.items() if k != "ip"})
    assert out == {"id": "1", "email": sha("ann@x.com"), "phone": sha("16505551234"),
                   "city": "***is", "score": 3}


def test_ip_drop_with_mapping_is_a_config_error() -> None:
    ctx = make_context(ROWS.schema, mapping=ALL, personal={"ip": "ip"},
                       policies={"ip": "drop"})
    errs = build_mapper(ctx).issues()
    assert [e.path for e in errs] == ["syncs.s.mapping.ip"]
    assert "drops" in str(errs[0])


def test_tags_from_stream_and_object_and_sync_precedence() -> None:
    out = gate_out(stream_personal={"email": "email"}, policies={"email": "hash"})
    assert out["email"] == sha("ann@x.com")
    # object tag on the destination field propagates to the column it maps from
    out = gate_out(mapping={"mail": "email", "id": "id"}, object_personal={"mail": "email"},
                   policies={"email": "mask"})
    assert out["email"] == "A***@X.com"  # masked as an e-mail: kind from the object tag
    # sync personal overrides the stream's tag
    out = gate_out(stream_personal={"city": "email"}, personal={"city": "city"},
                   policies={"city": "hash"})
    assert out["city"] == sha("paris")


def test_specificity_column_over_field_over_kind_and_sync_over_destination() -> None:
    kw = {"personal": {"email": "email"}, "mapping": {"mail": "email", "id": "id"}}
    assert gate_out(policies={"email": "hash", "*": "drop"}, **kw)["email"] == sha(
        "ann@x.com")
    # the kind 'email' and the column 'email' share a name: column wins anyway
    out = gate_out(policies={"mail": "mask"}, sync_policies={"email": "allow"}, **kw)
    assert out["email"] == " Ann@X.com "
    out = gate_out(policies={"email": "allow"}, sync_policies={"mail": "hash"}, **kw)
    assert out["email"] == " Ann@X.com "  # column key beats field key
    out = gate_out(policies={"mail": "hash"}, **kw)
    assert out["email"] == sha("ann@x.com")


def test_policy_options_phone_country_and_e164() -> None:
    rows = pa.RecordBatch.from_pylist([{"id": "1", "phone": "(650) 555-1234"}])
    ctx = make_context(rows.schema, mapping={"id": "id", "phone": "phone"},
                       personal={"phone": "phone"},
                       policies={"phone": {"action": "hash", "country_code": "1",
                                           "phone_format": "e164"}})
    out = build_gate(ctx).apply(rows, rows.column("id")).batch.to_pylist()[0]
    assert out["phone"] == sha("+16505551234")


def test_advertising_requires_explicit_policy_per_field() -> None:
    ctx = make_context(ROWS.schema, purposes=("advertising",), mapping=ALL,
                       personal={"email": "email"}, policies={"email": "hash"},
                       consent={"columns": {"advertising": "score"}})
    errs = build_mapper(ctx).issues()
    named = sorted(e.path.rsplit(".", 1)[1] for e in errs)
    assert named == ["city", "id", "ip", "phone", "score"]
    assert "advertising destination without a field policy" in str(errs[0])
    ctx = make_context(ROWS.schema, purposes=("advertising",), mapping=ALL,
                       personal={"email": "email"}, policies={"email": "hash", "*": "drop"},
                       sync_policies={"id": "allow", "score": "allow"},
                       consent={"columns": {"advertising": "score"}})
    errs = build_mapper(ctx).issues()
    # "*": drop covers the rest, but those fields are mapped: reading a dropped column
    assert sorted(e.path.rsplit(".", 1)[1] for e in errs) == ["city", "ip", "phone"]
    ok = make_context(ROWS.schema, purposes=("advertising",), mapping={
        "id": "id", "email": {"from": "email", "hash": "email"}},
        policies={"id": "allow"}, consent={"columns": {"advertising": "score"}})
    assert build_mapper(ok).issues() == []


def test_unknown_policy_value_is_reported() -> None:
    ctx = make_context(ROWS.schema, mapping={"id": "id"}, policies={"email": "encrypt"})
    errs = build_mapper(ctx).issues()
    assert errs and errs[0].path == "destinations.dest.policies.email"


def test_summary_lists_policies() -> None:
    ctx = make_context(ROWS.schema, mapping=ALL, personal={"email": "email"},
                       policies={"email": "hash"})
    gate = build_gate(ctx)
    gate.apply(ROWS, KEYS)
    assert gate.summary()["policies"] == {"email": {
        "action": "hash", "kind": "email", "rule": "destinations.dest.policies.email"}}


@given(lists=st.lists(st.one_of(st.none(), st.lists(st.one_of(
    st.none(), st.sampled_from([" Ann@X.com ", "bob@y.org", ""])), max_size=3)),
    max_size=6), start=st.integers(0, 3), action=st.sampled_from(["hash", "mask"]))
def test_a_list_column_gets_its_policy_per_element(lists, start, action) -> None:
    """A list of e-mails (a profile's ``email_all``) is hashed or masked element by
    element, null lists and null elements stay null, a sliced array too."""
    from conn.consent.normalize import mask, normalize
    from conn.consent.policies import FieldPolicy, apply_policy
    from conn.digests import sha256_hex

    arr = pa.array([None, *lists], pa.list_(pa.string())).slice(min(start, len(lists)))
    got = apply_policy(arr, FieldPolicy("email_all", action, kind="email")).to_pylist()

    def one(v: str | None) -> str | None:
        a = pa.array([v], pa.string())
        out = mask(a, "email") if action == "mask" else sha256_hex(normalize(a, "email"))
        return out[0].as_py()
    assert got == [None if v is None else [one(x) for x in v] for v in arr.to_pylist()]
