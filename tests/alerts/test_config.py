"""Bad ``alerts:`` sections: each problem names conn.yml, the path and what was
expected; an unset ${VAR} of a channel disables that channel only."""

from __future__ import annotations

import pytest
from conn.config import load_project
from conn.config.alerts import load_alerts
from conn.errors import ConfigError

from tests.runtime.test_runtime import PROJECT

GOOD_CHANNEL = """\
    mail: {type: email, host: smtp.example.com, from: a@example.com, to: b@example.com}
"""


def load(tmp_path, registry, alerts: str):
    (tmp_path / "conn.yml").write_text(PROJECT.replace("MODE", "upsert") + alerts)
    return load_project(tmp_path / "conn.yml", registry=registry)


def problems(tmp_path, registry, alerts: str) -> list[tuple[str | None, str]]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, registry, alerts)
    errors = getattr(info.value, "errors", [info.value])
    for e in errors:
        assert e.file == str(tmp_path / "conn.yml")
    return [(e.path, e.detail) for e in errors]


@pytest.mark.parametrize(("rules", "path", "message"), [
    ("r: {when: failed, channels: [pager]}", "alerts.rules.r.channels",
     "unknown channel 'pager' (declared: mail)"),
    ("r: {when: failed, syncs: [nope]}", "alerts.rules.r.syncs",
     "unknown sync 'nope' (declared: people_to_crm)"),
    ("r: {when: rejected_share}", "alerts.rules.r", "needs 'above'"),
    ("r: {when: rejected_share, above: 5}", "alerts.rules.r.above",
     "expected maximum 1, got 5"),
    ("r: {when: failed, above: 0.1}", "alerts.rules.r.above",
     "only read by rejected_share"),
    ("r: {when: failed, window: 3}", "alerts.rules.r.window", "only apply to 'volume'"),
    ("r: {when: volume, window: 3, min_runs: 4}", "alerts.rules.r.min_runs",
     "min_runs (4) is larger than window (3)"),
    ("r: {when: failed, cooldown: soon}", "alerts.rules.r.cooldown",
     "expected an interval such as 30s"),
    ("r: {when: crashed}", "alerts.rules.r.when", "expected one of 'failed'"),
    ("r: {when: failed, sink: x}", "alerts.rules.r", "unknown key(s) 'sink'"),
    ("r: {when: lag, for_seconds: 60}", "alerts.rules.r", "a 'lag' rule needs a threshold"),
    ("r: {when: failed, above_seconds: 60}", "alerts.rules.r.above_seconds",
     "only apply to 'lag' rules"),
    ("r: {when: lag, above_bytes: 1000, window: 3}", "alerts.rules.r.window",
     "only apply to 'volume'"),
    ("r: {when: lag, above_bytes: 1.5}", "alerts.rules.r.above_bytes",
     "expected an integer"),
    ("r: {when: lag, above_seconds: -1}", "alerts.rules.r.above_seconds",
     "expected minimum 0"),
])
def test_rule_problems_name_the_path(tmp_path, registry, rules, path, message):
    found = problems(tmp_path, registry,
                     f"alerts:\n  channels:\n{GOOD_CHANNEL}  rules:\n    {rules}\n")
    assert any(p == path and message in m for p, m in found), found


@pytest.mark.parametrize(("channel", "path", "message"), [
    ("{type: email, host: h, from: a@b.c}", "alerts.channels.c", "missing required key 'to'"),
    ("{type: email, host: h, from: a@b.c, to: x@y.z, port: 99999}",
     "alerts.channels.c.port", "expected maximum 65535"),
    ("{type: email, host: h, from: a@b.c, to: x@y.z, tls: maybe}", "alerts.channels.c.tls",
     "expected one of 'starttls'"),
    ("{type: webhook, url: ftp://x}", "alerts.channels.c.url", "expected a value matching"),
    ("{type: webhook, url: 'https://x', host: h}", "alerts.channels.c", "'host'"),
    ("{type: pager}", "alerts.channels.c.type", "expected one of 'email'"),
])
def test_channel_problems_name_the_path(tmp_path, registry, channel, path, message):
    found = problems(tmp_path, registry, f"alerts:\n  channels:\n    c: {channel}\n"
                                         "  rules:\n    r: {when: failed}\n")
    assert any(p == path and message in m for p, m in found), found


def test_an_unset_variable_disables_only_that_channel(tmp_path, registry, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    project = load(tmp_path, registry, "alerts:\n  channels:\n" + GOOD_CHANNEL
                   + "    hook: {type: slack, url: '${NOT_SET_ANYWHERE}'}\n"
                   "  rules:\n    r: {when: failed}\n")
    config = load_alerts(project)
    assert config is not None
    assert config.channels["mail"].problem is None
    problem = config.channels["hook"].problem
    assert problem is not None and problem.path == "alerts.channels.hook.url"
    assert "environment variable NOT_SET_ANYWHERE is not set" in str(problem)
    assert config.rules["r"].channels == ("mail", "hook")


def test_defaults(tmp_path, registry):
    project = load(tmp_path, registry, "alerts:\n  channels:\n" + GOOD_CHANNEL
                   + "  rules:\n    v: {when: volume}\n    f: {when: failed, cooldown: 5m}\n")
    config = load_alerts(project)
    assert config is not None
    v, f = config.rules["v"], config.rules["f"]
    assert (v.window, v.min_runs, v.mad, v.percent, v.metric, v.cooldown) == (
        10, 5, 3.0, None, "rows_sent", 3600.0)
    assert (f.cooldown, f.syncs) == (300.0, None)


def test_ca_file_is_relative_to_conn_yml(tmp_path, registry):
    project = load(tmp_path, registry, "alerts:\n  channels:\n"
                   "    mail: {type: email, host: h, from: a@b.c, to: x@y.z, "
                   "ca_file: certs/relay.pem}\n  rules:\n    f: {when: failed}\n")
    config = load_alerts(project)
    assert config is not None
    assert config.channels["mail"].settings["ca_file"] == str(tmp_path / "certs/relay.pem")
