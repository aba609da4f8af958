"""The API keeps to its OpenAPI description (core/conn/ui/openapi.json): every route is
described, and for requests drawn at random from the description (valid and invalid
parameters, known and unknown names) every answer has a documented status and a body
valid against the schema documented for it."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, urlencode

import jsonschema
import pytest
from conn.ui.api import openapi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli.test_cli import run_cli
from tests.conftest import examples
from tests.ui.conftest import call

SPEC = openapi()
SYNC = "people_to_crm"
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
               max_size=20)


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    # The schema's $refs point into the spec's components: validate with the whole spec
    # as the root document.
    return jsonschema.Draft202012Validator({**SPEC, **schema})


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), path, op) for path, item in SPEC["paths"].items()
            for m, op in item.items()]


def test_every_route_is_described_and_every_description_routed(app):
    described = {(m, re.sub(r"\{[^}]+\}", "*", p)) for m, p, _ in operations()}
    routed = {(m, "/api/" + "/".join(parts)) for m, parts, _ in app.api.routes}
    assert described == routed


def test_the_description_is_well_formed():
    assert SPEC["openapi"].startswith("3.1")
    for name, schema in SPEC["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema), name
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(SPEC))
    assert set(refs) <= set(SPEC["components"]["schemas"])
    for m, p, op in operations():
        assert op.get("operationId") and op.get("summary"), (m, p)
        assert re.findall(r"\{([^}]+)\}", p) == [x["name"] for x in op.get("parameters", [])
                                                 if x["in"] == "path"], (m, p)
        for status, resp in op["responses"].items():
            assert re.fullmatch(r"[1-5]\d\d", status) and resp["description"], (m, p)


#: Operations answered from the demo project (profiles, triggers, an experiment), with
#: the names it holds; the others from the test project of one sync.
DEMO = {"/api/profiles", "/api/profiles/{key}", "/api/triggers", "/api/triggers/{name}",
        "/api/experiments", "/api/experiments/{name}/report"}
DEMO_NAMES = {"key": "dev-3", "name": "health_dropped"}


def _known(path: str, run_id: str) -> str:
    if path.startswith("/api/experiments/"):
        return path.replace("{name}", "customers_to_crm") + "?outcome=product_events"
    names = DEMO_NAMES if path in DEMO else {"name": SYNC, "subject": "3"}
    for k, v in {**names, "run_id": run_id}.items():
        path = path.replace("{" + k + "}", v)
    return path


def _answers_as_described(app, method: str, path: str, op: dict[str, Any], url: str
                          ) -> None:
    status, answer = call(app, method, url, {} if method == "POST" else None)
    app.api.join(30)
    assert status < 300, (method, url, answer)
    schema = op["responses"][str(status)]["content"]["application/json"]["schema"]
    errors = [e.message for e in _validator(schema).iter_errors(answer)]
    assert not errors, (method, url, errors[:3])


@pytest.mark.slow
def test_each_operation_answers_as_described_with_known_names(app, monkeypatch, capsys):
    run_cli(monkeypatch, capsys, "sync", "mem", "crm")
    run_id = call(app, "GET", f"/api/syncs/{SYNC}/runs")[1]["runs"][0]["run_id"]
    for method, path, op in operations():
        if path not in DEMO:
            _answers_as_described(app, method, path, op, _known(path, run_id))


@pytest.mark.slow
def test_the_demo_operations_answer_as_described(demo_app):
    for method, path, op in operations():
        if path in DEMO:
            _answers_as_described(demo_app, method, path, op, _known(path, ""))


def _param(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    if schema.get("type") == "integer":
        lo, hi = schema.get("minimum", 0), schema.get("maximum", 10_000)
        return st.one_of(st.integers(lo, min(hi, lo + 50)).map(str),
                         st.integers().map(str), TEXT)
    return TEXT


@st.composite
def requests(draw, run_id: str) -> tuple[str, str, str, Any, dict[str, Any]]:
    method, path, op = draw(st.sampled_from(operations()))
    query = {}
    url = path
    for p in op.get("parameters", []):
        if p["in"] == "path":
            known = {"name": SYNC, "run_id": run_id, "subject": "3", "key": "3"}[p["name"]]
            value = draw(st.one_of(st.just(known), TEXT))
            url = url.replace("{" + p["name"] + "}", quote(value, safe=""))
        elif draw(st.booleans()):
            query[p["name"]] = draw(_param(p["schema"]))
    if query:
        url += "?" + urlencode(query)
    body = None
    if method == "POST":
        body = draw(st.one_of(st.just({}), st.fixed_dictionaries({"reason": TEXT}),
                              st.fixed_dictionaries({"reason": st.integers()})))
    return method, path, url, body, op


@pytest.mark.slow
@settings(max_examples=examples(150),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_answers_keep_to_the_description(app, monkeypatch, capsys, data):
    if not app.api.running() and not getattr(app, "_seeded", False):
        run_cli(monkeypatch, capsys, "sync", "mem", "crm")  # a run and rejected rows
        app._seeded = True  # type: ignore[attr-defined]
    run_id = call(app, "GET", f"/api/syncs/{SYNC}/runs")[1]["runs"][0]["run_id"]
    method, _path, url, body, op = data.draw(requests(run_id))
    status, answer = call(app, method, url, body)
    app.api.join(30)
    documented = op["responses"]
    assert str(status) in documented, (method, url, status, answer)
    schema = documented[str(status)]["content"]["application/json"]["schema"]
    errors = sorted(_validator(schema).iter_errors(answer), key=str)
    assert not errors, (method, url, status, [e.message for e in errors[:3]])
