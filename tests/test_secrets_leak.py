"""Credentials never leak, whatever their characters.

Passwords holding every URL delimiter (``@ : / ? # [ ] %``) and non-ASCII letters sit in
URLs of conn.yml (written as they are, percent-encoded, or from ``${ENV}``), in config
fields no schema marks secret. Plugins that behave like real drivers cut the URL apart
(``urllib.parse``), quote its pieces in their errors and log it. Every output is then
searched for the password, its encoded and decoded forms and each piece of it between
delimiters: ``conn check``, failing syncs, ``conn runs --json``, the state files and the
logs at DEBUG."""

from __future__ import annotations

import json
import logging
import re
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import duckdb
import pyarrow as pa
import pytest
from conn import hookimpl, secrets
from conn.destination import Capabilities, Destination, ObjectInfo, WriteRequest, WriteResult
from conn.source import Source, StreamInfo
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cli.test_cli import run_cli
from tests.conftest import examples, sampled
from tests.runtime.test_runtime import BASE_ROWS, people

log = logging.getLogger("leaky_driver")

PASSWORDS = [
    "p@ss:TopSecretFragment99/x",                 # the shape that leaked a port error
    "Zz9/Wq7?Kk3#Mm5[Nn1]Pp2%Qq4@Rr6:Ss8",        # every delimiter
    "Ünïcødé€密码:Sécrét/Ωmega@99",                # non-ASCII
    "%41%42Secr3t%2Fp4rtX:m0reQ@3ndZ",            # percent signs: decoding changes it
]
DELIMS = re.compile(r"[:/@?#\[\]]")


def forms(password: str) -> set[str]:
    """What must never appear: the password in every spelling, and every piece of at
    least four characters (shorter ones cannot be masked without masking everything)."""
    out = {password, quote(password, safe=""), unquote(password)}
    for form in (password, unquote(password)):
        out |= {p for p in DELIMS.split(form) if len(p) >= 4}
    return {f for f in out if len(f) >= 4}


def driver_connect(url: str) -> None:
    """What a database driver does with a URL: parse it, log it, fail quoting it."""
    log.debug("connecting to %s", url)
    parts = urlsplit(url)
    port = parts.port  # ValueError quoting a piece when the password holds '/' or ':'
    log.debug("user %s password %s", parts.username, unquote(parts.password or ""))
    raise ConnectionRefusedError(
        f"could not connect to {url} (host {parts.hostname}, port {port}): password "
        f"authentication failed for {unquote(parts.password or '')!r}")


class LeakySource(Source):
    """A source whose 'database' refuses every connection, quoting what it got."""

    name = "leaky_db"
    config_schema = {"type": "object", "properties": {"url": {"type": "string"}}}

    def check(self) -> None:
        try:
            driver_connect(self.config["url"])
        except Exception:
            log.exception("check failed")
            raise

    def discover(self) -> list[StreamInfo]:
        driver_connect(self.config["url"])
        return []

    def read_batches(self, stream: StreamInfo, state: Any, batch_rows: int
                     ) -> Iterator[pa.RecordBatch]:
        driver_connect(self.config["url"])
        yield from ()


class LeakyApi(Destination):
    """An HTTP destination whose endpoint carries credentials; every write fails."""

    name = "leaky_api"
    config_schema = {"type": "object", "properties": {"endpoint": {"type": "string"}}}

    def check(self) -> None:
        driver_connect(self.config["endpoint"])

    def objects(self) -> list[ObjectInfo]:
        fields = {"type": "object", "properties": {"email": {"type": "string"}}}
        return [ObjectInfo("contacts", fields, ("email",), Capabilities(batch_size=100))]

    def write_batch(self, request: WriteRequest) -> WriteResult:
        url = self.config["endpoint"]
        log.warning("POST %s/contacts -> 401", url)
        raise RuntimeError(f"POST {url}/contacts: 401 Unauthorized for "
                           f"{unquote(urlsplit(url).password or '')}")


@pytest.fixture
def leaky(registry) -> Any:
    mod = types.ModuleType("leaky_plugins")

    @hookimpl
    def register_sources(register: Callable[..., None]) -> None:
        register(LeakySource)

    @hookimpl
    def register_destinations(register: Callable[..., None]) -> None:
        register(LeakyApi)

    mod.register_sources = register_sources  # type: ignore[attr-defined]
    mod.register_destinations = register_destinations  # type: ignore[attr-defined]
    registry.add_module(mod)
    return registry


def project(url_password: str, api_password: str) -> str:
    return f"""\
version: 1
sources:
  mem: {{type: memory}}
  db:
    type: leaky_db
    config: {{url: "postgresql://reader:{url_password}@db.example.com:5432/app"}}
destinations:
  api:
    type: leaky_api
    config: {{endpoint: "https://svc:{api_password}@api.example.com/v1"}}
syncs:
  from_db:
    source: db
    stream: customers
    primary_key: id
    destination: api
    object: contacts
  to_api:
    source: mem
    stream: people
    primary_key: id
    destination: api
    object: contacts
    mapping: {{email: email}}
"""


def state_text(folder: Path) -> str:
    """Every file under .conn: raw bytes as text, and every DuckDB table dumped (DuckDB
    compresses strings, so a raw search alone could miss one)."""
    out = []
    for f in folder.rglob("*"):
        if not f.is_file():
            continue
        out.append(f.read_bytes().decode("utf-8", "replace"))
        if f.suffix == ".duckdb":
            con = duckdb.connect(str(f), read_only=True)
            try:
                for schema, table in con.execute(
                        "SELECT table_schema, table_name FROM information_schema.tables"
                        ).fetchall():
                    out.append(repr(con.execute(f'SELECT * FROM "{schema}"."{table}"')
                                    .fetchall()))
            finally:
                con.close()
    return "\n".join(out)


@pytest.mark.parametrize("password", sampled(PASSWORDS))
@pytest.mark.parametrize("spelling", ["as is", "percent-encoded", "from ${ENV}"])
def test_url_credentials_never_leak(leaky, tmp_path, monkeypatch, capsys, caplog,
                                    password, spelling):
    people(BASE_ROWS)
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("CONN_LOG_LEVEL", "DEBUG")
    monkeypatch.chdir(tmp_path)
    if spelling == "as is":
        text = project(password, password[::-1])
    elif spelling == "percent-encoded":
        text = project(quote(password, safe=""), quote(password[::-1], safe=""))
    else:
        monkeypatch.setenv("LEAK_DB_PW", password)
        monkeypatch.setenv("LEAK_API_PW", password[::-1])
        text = project("${LEAK_DB_PW}", "${LEAK_API_PW}")
    (tmp_path / "conn.yml").write_text(text)

    seen: list[str] = []
    for args in (["check"], ["check", "--json"], ["sync", "db", "api"],
                 ["sync", "db", "api", "--json"], ["sync", "mem", "api"],
                 ["sync", "mem", "api", "--json"], ["sync", "mem", "api", "--dry-run"],
                 ["runs", "--json"], ["runs"], ["discover", "db"], ["discover", "db",
                                                                    "--json"]):
        code, out, err = run_cli(monkeypatch, capsys, *args)
        assert code != 0 or args[0] == "runs" or "--dry-run" in args, (args, out, err)
        seen += [out, err]
    seen.append(caplog.text)
    seen.append(state_text(tmp_path / ".conn"))
    everything = "\n".join(seen)
    # The failure paths ran: connections refused, writes failed, and recorded so.
    assert "could not" in everything and '"status": "failed"' in everything
    assert "POST https://***@api.example.com/v1/contacts" in everything or \
        "IPv" in everything  # urllib refuses some bracketed "hosts" before any request
    for secret in forms(password) | forms(password[::-1]):
        assert secret not in everything, f"{secret!r} leaked"


@settings(max_examples=examples(300), deadline=None)
@given(st.text(st.sampled_from("@:/?#[]%aZ9ü€密 "), min_size=1, max_size=24),
       st.booleans())
def test_every_piece_a_url_parser_can_cut_is_masked(password: str, encoded: bool) -> None:
    """Whatever urllib makes of a URL holding this password (written as is or
    percent-encoded), no message quoting a part of it shows a piece of the password."""
    secrets.clear()
    written = quote(password, safe="") if encoded else password
    url = f"mysql://admin:{written}@db.internal:3306/crm"
    secrets.register_url_credentials({"url": url})
    messages = [url, f"connecting to {url!r}"]
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL" for some brackets
        messages.append(str(exc))
    else:
        messages += [str(parts), repr(parts.netloc)]
        for attr in ("username", "password", "hostname", "port", "path", "query",
                     "fragment"):
            try:
                messages.append(f"{attr}={getattr(parts, attr)!r}")
            except ValueError as exc:
                messages.append(str(exc))
    for message in messages:
        shown = secrets.redact(message)
        for secret in forms(password):
            assert secret not in shown, (message, shown)


def test_user_information_of_any_url_is_masked_in_messages() -> None:
    text = ("cannot reach postgresql://app:hunter2@db:5432/x or "
            "'https://deploy:k3y@git.example.com/repo.git'")
    assert secrets.redact(text) == ("cannot reach postgresql://***@db:5432/x or "
                                    "'https://***@git.example.com/repo.git'")


def test_tracebacks_in_logs_are_redacted(caplog) -> None:
    secrets.register("s3cr3t-value")
    handler = logging.StreamHandler(stream := __import__("io").StringIO())
    handler.addFilter(secrets.RedactingFilter())
    logger = logging.getLogger("conn.test.leak")
    logger.addHandler(handler)
    try:
        raise ValueError("token s3cr3t-value refused")
    except ValueError:
        logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert "Traceback" in stream.getvalue() and "s3cr3t-value" not in stream.getvalue()
    assert sys.exc_info() == (None, None, None)


def test_json_objects_are_redacted_in_their_keys_too() -> None:
    # A report counts rejections by the vendor's message, which may quote a secret.
    secrets.register("k3y-in-a-reason-77")
    out = secrets.redact_obj({"rejected: k3y-in-a-reason-77 refused": 2, "n": [{"a": 1}]})
    assert "k3y-in-a-reason-77" not in json.dumps(out) and out["n"] == [{"a": 1}]
