"""Fixtures of the alerts' tests: a project whose syncs run on the in-process fakes, a
real SMTP server and a loopback webhook receiver."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conn.config import load_project
from conn.config.model import Project
from conn.plugins import Registry
from conn.testing.http import FaultServer

from tests.alerts.smtp import Mailbox, smtp_server
from tests.conftest import unavailable
from tests.runtime.test_runtime import PROJECT

#: A project of one sync (tests/runtime's) plus ALERTS (formatted with the servers).
ALERTS = """\
alerts:
  link: "http://127.0.0.1:8765/runs/{{run_id}}?sync={{sync}}"
  cooldown: 1h
  channels:
    mail:
      type: email
      host: 127.0.0.1
      port: {smtp_port}
      tls: none
      username: alerts
      password: ${{ALERT_SMTP_PASSWORD}}
      from: conn@example.com
      to: [ops@example.com]
      timeout: 5
    hook:
      type: webhook
      url: "{hook_url}/hooks/T0KEN-in-the-path-4711"
      headers: {{Authorization: "Bearer ${{ALERT_HOOK_TOKEN}}"}}
      timeout: 5
  rules:
{rules}
"""
SMTP_PASSWORD = "smtp-pw-Zq9x!secret"
HOOK_TOKEN = "hook-token-Kp3v7secret"


@pytest.fixture
def mail(monkeypatch) -> Iterator[tuple[int, Mailbox]]:
    monkeypatch.setenv("ALERT_SMTP_PASSWORD", SMTP_PASSWORD)
    with smtp_server(user="alerts", password=SMTP_PASSWORD) as server:
        yield server


@pytest.fixture
def hook(monkeypatch) -> Iterator[FaultServer]:
    monkeypatch.setenv("ALERT_HOOK_TOKEN", HOOK_TOKEN)

    def accept(req, server):
        from conn.testing.http import Reply

        return Reply(200, json={"ok": True})

    with FaultServer(handler=accept) as server:
        yield server


@pytest.fixture
def alerting(tmp_path: Path, registry: Registry, mail, hook
             ) -> Callable[..., Project]:
    """``alerting(rules_yaml, extra=...)``: write conn.yml with those rules, load it."""
    port, _ = mail

    def make(rules: str, text: str = PROJECT) -> Project:
        body = "".join(f"    {line}\n" for line in rules.strip("\n").splitlines())
        (tmp_path / "conn.yml").write_text(
            text.replace("MODE", "upsert")
            + ALERTS.format(smtp_port=port, hook_url=hook.url, rules=body.rstrip("\n")))
        return load_project(tmp_path / "conn.yml", registry=registry)

    return make


@pytest.fixture
def nats_stream() -> Iterator[tuple[Any, str]]:
    """The machine's NATS server (the follow tests' client) and a fresh JetStream
    stream on it, deleted afterwards, for followed syncs into the webhook destination."""
    pytest.importorskip("conn_source_nats")
    pytest.importorskip("conn_destination_webhook")
    from tests.test_follow_nats import Nats

    server, stream = Nats(), "CONN_ALERT_" + uuid.uuid4().hex[:10].upper()
    try:
        server.add_stream(stream)
    except Exception as exc:
        unavailable(f"NATS at 127.0.0.1:4222 cannot be reached: {exc}")
    yield server, stream
    server.delete_stream(stream)
