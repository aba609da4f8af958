"""``conn rejected`` shows, next to each rejected row's reason, the vendor exchange that
rejected it (docs/cli.md): ``POST /hook -> HTTP 200`` in the table, the row's part of
the request and the start of the answer with ``--excerpt``, all of it with ``--json``.
Through the real CLI, a webhook destination and a loopback HTTP server; no secret (the
URL's key, the auth header, the signing secret) is printed or stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conn.plugins import Registry, reset_registry
from conn.testing.http import FaultServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fakes
from tests.cli_in_process import run_cli
from tests.conftest import examples
from tests.runtime.test_runtime import people

pytest.importorskip("conn_destination_webhook")
SYNC = "people_to_hook"
KEY, TOKEN, SIGNING = "qk-71d3aa90c2e5", "tok-4be2f07a9d81", "whsec-c0a1b2c3d4e5"


@pytest.fixture
def hook_registry() -> Iterator[Registry]:
    from conn_destination_webhook import plugin

    fakes.reset()
    reg = Registry(autoload=False)
    reg.add_module(fakes)
    reg.add_module(plugin)
    reset_registry(reg)
    yield reg
    reset_registry(Registry(autoload=False))
    fakes.reset()


def write_project(where: Path, url: str) -> None:
    (where / "conn.yml").write_text(f"""\
version: 1
sources:
  mem: {{type: memory}}
destinations:
  hook:
    type: webhook
    config:
      url: "{url}/hook?api_key=${{HOOK_KEY}}"
      secret: "${{HOOK_SIGNING}}"
      headers: {{Authorization: "Bearer ${{HOOK_TOKEN}}"}}
      batch_size: 8
      check: none
syncs:
  {SYNC}:
    source: mem
    stream: people
    destination: hook
    object: records
    primary_key: id
""")


@given(st.integers(2, 30).flatmap(lambda n: st.tuples(
    st.just(n), st.sets(st.integers(1, n), min_size=1), st.sampled_from(["records", "batch"]))))
@settings(max_examples=examples(15), suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_rejected_rows_show_the_exchange_and_no_secret(hook_registry, monkeypatch, capsys,
                                                       tmp_path_factory, case):
    n, bad, mode = case
    where = tmp_path_factory.mktemp("p")
    monkeypatch.chdir(where)
    for name, value in (("HOOK_KEY", KEY), ("HOOK_TOKEN", TOKEN), ("HOOK_SIGNING", SIGNING)):
        monkeypatch.setenv(name, value)
    # Person 1's note quotes the token: its excerpt masks it.
    people([(i, f"p{i}@example.com", f"Person {i}" + (f" {TOKEN}" if i == 1 else ""), True)
            for i in range(1, n + 1)])
    with FaultServer(reject={str(i) for i in bad}, reject_mode=mode) as srv:
        write_project(where, srv.url)
        assert run_cli(monkeypatch, capsys, "sync", "mem", "hook")[0] == 4
        received = {r["id"]: r for q in srv.requests if q.body for r in q.json["records"]}
    code, out, err = run_cli(monkeypatch, capsys, "rejected", SYNC, "--json")
    assert code == 0, err
    rows = {r["key"]: r for r in json.loads(out)["rejected"]}
    assert set(rows) == bad
    for k, r in rows.items():
        ex = r["excerpt"]
        assert (ex["method"], ex["path"], ex["status"]) == \
            ("POST", "/hook", 400 if mode == "batch" else 200)
        want = json.dumps(received[k], separators=(",", ":")).replace(TOKEN, "***")
        assert json.loads(ex["request"]) == json.loads(want)  # the row as it was sent
        assert (f"record {k} rejected" in ex["response"]) if mode == "records" else \
            ("batch refused" in ex["response"])
    code, table, _ = run_cli(monkeypatch, capsys, "rejected", SYNC)
    lines = table.splitlines()
    assert lines[0].split("\t")[-1] == "exchange" and len(lines) == len(bad) + 1
    assert all(line.endswith("\tPOST /hook -> HTTP " + ("400" if mode == "batch" else "200"))
               for line in lines[1:])
    k = min(bad)
    code, detail, _ = run_cli(monkeypatch, capsys, "rejected", SYNC, "--key", str(k),
                              "--excerpt")
    assert f"  request:  {rows[k]['excerpt']['request']}" in detail
    assert "  response: " in detail
    state = b"".join(p.read_bytes() for p in (where / ".conn").rglob("*") if p.is_file())
    assert b"rejections" in state  # the state files were read
    for secret in (KEY, TOKEN, SIGNING):
        assert secret not in out + table + detail
        assert secret.encode() not in state
