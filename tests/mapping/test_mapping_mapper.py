"""The mapper: field specs, coercion to the object's JSON Schema, row rejections, issues."""

from __future__ import annotations

import datetime as dt
import hashlib

import pyarrow as pa
import pytest
from conn.consent import build_gate
from conn.hookspecs import hookimpl
from conn.mapping import build_mapper
from conn.pipeline import records, skip_fields
from conn.plugins import Registry
from conn.testing.sandbox import make_context

ROWS = pa.RecordBatch.from_pylist([
    {"id": 1, "first": "Ann", "last": "Lee", "email": " Ann@X.com ", "tier": "g",
     "ltv": "12", "born": dt.datetime(1990, 2, 3, 4, 5, 6), "city": None,
     "tags": [1], "opt": "2024-01-31"},
    {"id": 2, "first": "Bob", "last": None, "email": "bob@x.com", "tier": "z",
     "ltv": None, "born": None, "city": "Oslo", "tags": [], "opt": "31/01/2024"},
])
KEYS = pa.array(["1", "2"])


def run(mapping, fields=None, **kw):
    ctx = make_context(ROWS.schema, mapping=mapping, fields=fields,
                       match_key=kw.pop("match_key", "id"), **kw)
    mapper = build_mapper(ctx)
    assert mapper.issues() == []
    return mapper.apply(build_gate(ctx).apply(ROWS, KEYS)), mapper


def col(mapped, name):
    return mapped.batch.column(name).to_pylist()


def test_shorthand_rename_and_explicit_drop() -> None:
    mapped, _ = run({"id": "id", "mail": "email"})
    assert mapped.batch.schema.names == ["id", "mail"]
    assert col(mapped, "mail") == [" Ann@X.com ", "bob@x.com"]


def test_template_concat_value_map_default_constant() -> None:
    mapped, _ = run({
        "id": "id",
        "name": {"template": "{first} {last}"},
        "label": {"concat": ["first", "last", "city"], "sep": "|"},
        "plan": {"from": "tier", "value_map": {"g": "gold", "s": "silver"},
                 "default": "basic"},
        "origin": {"value": "warehouse"},
        "city": {"from": "city", "default": "unknown"},
    })
    assert col(mapped, "name") == ["Ann Lee", "Bob"]
    assert col(mapped, "label") == ["Ann|Lee", "Bob|Oslo"]
    assert col(mapped, "plan") == ["gold", "basic"]
    assert col(mapped, "origin") == ["warehouse", "warehouse"]
    assert col(mapped, "city") == ["unknown", "Oslo"]


def test_transforms_format_parse_cast_hash() -> None:
    mapped, _ = run({
        "id": "id",
        "email": {"from": "email", "transforms": ["trim", "lower"]},
        "born": {"from": "born", "format": "%Y-%m-%d"},
        "opt_in": {"from": "opt", "parse": "%Y-%m-%d", "format": "%d.%m.%Y"},
        "ltv": {"from": "ltv", "cast": "integer"},
        "email_sha256": {"from": "email", "hash": "email"},
        "first_sha": {"from": "first", "hash": True},
    })
    assert col(mapped, "email") == ["ann@x.com"]  # row 2 rejected: bad date
    assert col(mapped, "born") == ["1990-02-03"]
    assert col(mapped, "opt_in") == ["31.01.2024"]
    assert col(mapped, "ltv") == [12]
    assert col(mapped, "email_sha256") == [hashlib.sha256(b"ann@x.com").hexdigest()]
    assert col(mapped, "first_sha") == [hashlib.sha256(b"ann").hexdigest()]
    assert mapped.rejected == [("2", "opt_in: cannot convert (format)")]


def test_passthrough_star() -> None:
    fields = {"type": "object", "properties": {"id": {"type": "string"},
                                               "email": {"type": "string"},
                                               "nick": {"type": "string"}}}
    mapped, _ = run("*", fields=fields)
    assert mapped.batch.schema.names == ["id", "email"]
    assert col(mapped, "id") == ["1", "2"]  # coerced to the object's string type
    mapped, _ = run({"*": "*", "nick": "first"}, fields=fields)
    assert mapped.batch.schema.names == ["id", "email", "nick"]
    mapped, _ = run({})  # no mapping: passthrough of every column into an open object
    assert mapped.batch.num_columns == ROWS.num_columns


def test_null_skip_is_visible_to_destinations() -> None:
    mapped, _ = run({"id": "id", "city": {"from": "city", "null": "skip"}, "last": "last"})
    assert skip_fields(mapped.batch.schema) == {"city"}
    assert records(mapped.batch) == [{"id": 1, "last": "Lee"},
                                     {"id": 2, "city": "Oslo", "last": None}]
    mapped, _ = run({"id": "id", "city": "city"}, sync_raw={"null_handling": "skip"})
    assert skip_fields(mapped.batch.schema) == {"city", "id"}


FIELDS = {
    "type": "object",
    "required": ["id", "email"],
    "properties": {
        "id": {"type": "string"},
        "email": {"type": "string", "format": "email", "maxLength": 12},
        "ltv": {"type": ["integer", "null"], "minimum": 0, "maximum": 100},
        "plan": {"type": "string", "enum": ["g", "s"]},
        "vip": {"type": "boolean"},
        "score": {"type": "number", "exclusiveMaximum": 10},
        "code": {"type": "string", "pattern": "^[A-Z]+$", "minLength": 2},
    },
}


def test_row_validation_rejects_with_reasons() -> None:
    rows = pa.RecordBatch.from_pylist([
        {"id": 1, "email": "a@x.com", "ltv": "5", "plan": "g", "vip": "yes", "score": "1.5",
         "code": "AB"},
        {"id": 2, "email": "not-an-email", "ltv": "5", "plan": "g", "vip": "no",
         "score": "1", "code": "AB"},
        {"id": 3, "email": "long.name@example.com", "ltv": "5", "plan": "g", "vip": "no",
         "score": "1", "code": "AB"},
        {"id": 4, "email": "b@x.com", "ltv": "500", "plan": "g", "vip": "no", "score": "1",
         "code": "AB"},
        {"id": 5, "email": "b@x.com", "ltv": "5", "plan": "x", "vip": "no", "score": "1",
         "code": "AB"},
        {"id": 6, "email": "b@x.com", "ltv": "five", "plan": "g", "vip": "no",
         "score": "1", "code": "AB"},
        {"id": 7, "email": None, "ltv": "5", "plan": "g", "vip": "no", "score": "1",
         "code": "AB"},
        {"id": 8, "email": "b@x.com", "ltv": None, "plan": "g", "vip": "maybe",
         "score": "1", "code": "AB"},
        {"id": 9, "email": "b@x.com", "ltv": "1", "plan": "g", "vip": "1", "score": "10",
         "code": "ab"},
        {"id": 10, "email": "b@x.com", "ltv": "1", "plan": "g", "vip": "1", "score": "2",
         "code": "A"},
    ])
    mapping = {k: k for k in FIELDS["properties"]}
    ctx = make_context(rows.schema, mapping=mapping, fields=FIELDS, identifiers=("email",),
                       match_key="email")
    mapper = build_mapper(ctx)
    assert mapper.issues() == []
    keys = pa.array([str(i) for i in range(1, 11)])
    mapped = mapper.apply(build_gate(ctx).apply(rows, keys))
    assert mapped.keys.to_pylist() == ["1"]
    assert mapped.batch.to_pylist() == [{"id": "1", "email": "a@x.com", "ltv": 5,
                                         "plan": "g", "vip": True, "score": 1.5,
                                         "code": "AB"}]
    assert mapped.rejected == [
        ("2", "email: not an e-mail address"),
        ("3", "email: longer than 12 characters"),
        ("4", "ltv: above maximum 100"),
        ("5", "plan: not one of ['g', 's']"),
        ("6", "ltv: cannot convert to ['integer', 'null']"),
        ("7", "email: required field is empty"),
        ("8", "vip: cannot convert to boolean"),
        ("9", "score: not below 10"),
        ("10", "code: shorter than 2 characters"),
    ]
    assert mapper.summary()["rejected"] == 9


def test_hashed_fields_skip_format_checks() -> None:
    fields = {"type": "object", "properties": {"email": {"type": "string",
                                                         "format": "email"}}}
    mapped, _ = run({"email": "email"}, fields=fields, personal={"email": "email"},
                    policies={"email": "hash"}, match_key="email")
    assert mapped.rejected == [] and mapped.batch.num_rows == 2


def test_issues_all_at_once_with_paths() -> None:
    fields = {"type": "object", "required": ["email", "name"],
              "properties": {"email": {"type": "string"}, "name": {"type": "string"},
                             "n": {"type": "integer"}, "t": {"type": "string"}}}
    ctx = make_context(ROWS.schema, fields=fields, identifiers=("email",),
                       match_key="id", mapping={
                           "bogus": "first",
                           "email": {"from": "nope"},
                           "n": {"from": "tags"},
                           "t": {"from": "first", "transforms": ["trim", "frobnicate"]},
                           "x": {"from": "first", "template": "{a}"},
                           "c": {"from": "first", "cast": "complex"},
                       })
    errs = build_mapper(ctx).issues()
    assert any(e.path == "syncs.s.mapping.x" and "exactly one of" in e.detail
               for e in errs)
    paths = [e.path for e in errs]
    assert "syncs.s.mapping.c.cast" in paths
    assert "syncs.s.mapping.bogus" in paths  # unknown destination field
    assert "syncs.s.mapping.email" in paths  # unknown source column
    assert "syncs.s.mapping.t.transforms[1]" in paths  # unknown transform
    assert "syncs.s.mapping.name" in paths  # required field unmapped
    assert "syncs.s.mapping.id" in paths  # match key not mapped
    assert "syncs.s.match_key" in paths  # match key not an identifier
    assert "syncs.s.mapping.n" in paths  # impossible cast: list -> integer
    assert all(e.file == "conn.yml" for e in errs)


def test_impossible_explicit_cast() -> None:
    ctx = make_context(ROWS.schema, mapping={"id": "id", "t": {"from": "tags",
                                                               "cast": "string"}})
    errs = build_mapper(ctx).issues()
    assert [e.path for e in errs] == ["syncs.s.mapping.t"]
    assert "impossible conversion" in str(errs[0])


class Shout:
    @hookimpl
    def register_transforms(self, register):  # type: ignore[no-untyped-def]
        import pyarrow.compute as pc

        register("shout", lambda arr, suffix="!", **_: pc.binary_join_element_wise(
            pc.utf8_upper(arr), suffix, ""))


def test_plugin_transform_in_mapping() -> None:
    reg = Registry(autoload=False)
    reg.add_module(Shout())
    mapped, _ = run({"id": "id", "f": {"from": "first",
                                       "transforms": [{"shout": {"suffix": "?"}}]}},
                    registry=reg)
    assert col(mapped, "f") == ["ANN?", "BOB?"]


@pytest.mark.parametrize(("prop", "values", "out"), [
    ({"type": "string", "format": "date"}, [dt.datetime(2024, 1, 2, 3, 4)], ["2024-01-02"]),
    ({"type": "string", "format": "date-time"}, [dt.datetime(2024, 1, 2, 3, 4)],
     ["2024-01-02T03:04:00.000000Z"]),
    ({"type": "string", "format": "date-time"},
     pa.array([dt.datetime(2024, 1, 2, 3, 4)], pa.timestamp("s", "Europe/Paris")),
     ["2024-01-02T03:04:00Z"]),
    ({"type": "number"}, [1, None], [1.0, None]),
    ({"type": "integer"}, [1.0, 2.0], [1, 2]),
    ({"type": "boolean"}, [1, 0], [True, False]),
    ({"type": "string"}, [True], ["true"]),
])
def test_coercion_to_json_schema(prop: dict, values: list, out: list) -> None:
    rows = pa.RecordBatch.from_pydict({"id": list(range(len(values))), "v": values})
    ctx = make_context(rows.schema, mapping={"id": "id", "v": "v"},
                       fields={"type": "object", "properties": {"id": {}, "v": prop}})
    mapper = build_mapper(ctx)
    assert mapper.issues() == []
    mapped = mapper.apply(build_gate(ctx).apply(rows, rows.column("id").cast(pa.string())))
    assert mapped.batch.column("v").to_pylist() == out


def test_constant_only_mapping_keeps_rows() -> None:
    mapped, _ = run({"id": {"value": "x"}})
    assert col(mapped, "id") == ["x", "x"]
