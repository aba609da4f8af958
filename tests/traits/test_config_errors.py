"""Bad ``traits:``, ``audiences:`` and ``triggers:`` entries: one clear error each,
naming conn.yml and the path of the value (docs/traits.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conn.config.load import load_project
from conn.errors import ConfigError, ConfigErrors

HEAD = """
sources: {wh: {type: duckdb, config: {path: wh.duckdb}}}
destinations: {out: {type: files, config: {path: out}}}
"""

CASES = [
    ("traits: {a: {source: wh, stream: e, key: k, aggregate: sum}}", "traits.a.column",
     "needs 'column'"),
    ("traits: {a: {source: nope, stream: e, key: k, aggregate: count}}", "traits.a.source",
     "unknown source 'nope'"),
    ("traits: {a: {source: wh, stream: e, key: k, aggregate: count, window: 7x, time: t}}",
     "traits.a.window", "is not 'all' or a duration"),
    ("traits: {a: {source: wh, stream: e, key: k, aggregate: count, window: 7d}}",
     "traits.a.time", "needs 'time'"),
    ("traits: {a: {sql: 'b + 1'}, b: {sql: 'a * 2'}}", "traits.a", "cycle"),
    ("traits: {a: {ratio: [x, y]}}", "traits.a.ratio[0]", "unknown trait 'x'"),
    ("traits: {a: {sql: '1', aggregate: count}}", "traits.a", "exactly one of"),
    ("triggers: {t: {watch: h, below: 40, rearm: 30}}", "triggers.t.rearm",
     "must be at or above the threshold 40"),
    ("triggers: {t: {watch: h, above: 70, cooldown: soon}}", "triggers.t.cooldown",
     "is not a duration"),
    ("triggers: {t: {audience: vip, when: enter}}", "triggers.t.audience",
     "unknown audience 'vip'"),
    ("syncs: {s: {source: wh, stream: c, destination: out, object: records, trigger: t}}",
     "syncs.s.trigger", "unknown trigger 't'"),
    ("audiences: {vip: {where: 'x > 1'}}\nsyncs: {s: {source: wh, stream: c, "
     "destination: out, object: records, audience: gold}}", "syncs.s.audience",
     "unknown audience 'gold'"),
]


@pytest.mark.parametrize(("text", "path", "words"), CASES)
def test_error_names_file_and_path(tmp_path: Path, text: str, path: str, words: str) -> None:
    f = tmp_path / "conn.yml"
    f.write_text(HEAD + text + "\n")
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        load_project(f, validate_plugins=False)
    errors = info.value.errors if isinstance(info.value, ConfigErrors) else [info.value]
    hits = [e for e in errors if e.path == path]
    assert hits, [(e.path, e.detail) for e in errors]
    assert words in hits[0].detail
    assert hits[0].file == str(f)


@pytest.mark.parametrize(("trait", "path"), [
    ({"source": "wh", "stream": "orders", "key": "customer", "aggregate": "count",
      "where": "no_such_column = 1"}, "traits.bad.where"),
    ({"sql": "spend + no_such_column"}, "traits.bad.sql"),
])
def test_sql_duckdb_refuses_is_an_error_before_any_row(tmp_path: Path, trait: dict,
                                                       path: str) -> None:
    import pyarrow as pa
    import yaml
    from conn.plugins import Registry
    from conn.runtime.runner import run_syncs

    from tests import fakes

    fakes.reset()
    fakes.TABLES["people"] = (pa.table({"id": ["1"], "email": ["u1@example.com"]}), ("id",))
    fakes.TABLES["orders"] = (pa.table({"customer": [1], "amount": [5.0]}), ())
    reg = Registry(autoload=False)
    reg.add_module(fakes)
    doc = {"sources": {"wh": {"type": "memory"}},
           "destinations": {"crm": {"type": "recorder"}},
           "traits": {"spend": {"source": "wh", "stream": "orders", "key": "customer",
                                "aggregate": "sum", "column": "amount"}, "bad": trait},
           "syncs": {"s": {"source": "wh", "stream": "people", "destination": "crm",
                           "object": "contacts", "match_key": "email",
                           "mapping": {"id": "id", "email": "email", "ltv": "bad"}}}}
    f = tmp_path / "conn.yml"
    f.write_text(yaml.safe_dump(doc))
    project = load_project(f, registry=reg)
    with pytest.raises(ConfigError) as info:
        run_syncs(project, list(project.syncs.values()), reg)
    assert info.value.path == path and info.value.file == str(f)
    assert "no_such_column" in info.value.detail
    assert fakes.RECEIVED == []


HOLDOUT_CASES = [
    # The schema: the shape of a holdout of an audience or a trigger.
    ("audiences: {vip: {where: 'x > 1', holdout: {percent: 0}}}",
     "audiences.vip.holdout.percent", "0"),
    ("triggers: {t: {watch: h, below: 40, holdout: {percent: 10, colour: red}}}",
     "triggers.t.holdout", "colour"),
    # What the schema cannot see (conn.experiments.spec.holdout_errors).
    ("audiences: {vip: {where: 'x > 1', holdout: {percent: 10, name: exp}}}\n"
     "triggers: {t: {watch: h, below: 40, holdout: {percent: 10, name: exp}}}",
     "triggers.t.holdout.name", "already the holdout of audience 'vip'"),
    ("audiences: {vip: {where: 'x > 1', holdout: {percent: 10}}}\nsyncs: {s: {source: wh, "
     "stream: c, destination: out, object: records, audience: vip, "
     "holdout: {percent: 5}}}", "syncs.s", "would take part in 2 holdout experiments"),
]


@pytest.mark.parametrize(("text", "path", "words"), HOLDOUT_CASES)
def test_holdout_of_audience_or_trigger_errors(tmp_path: Path, text: str, path: str,
                                               words: str) -> None:
    from conn.experiments.spec import holdout_errors

    f = tmp_path / "conn.yml"
    f.write_text(HEAD + text + "\n")
    try:
        errors = holdout_errors(load_project(f, validate_plugins=False))
    except (ConfigError, ConfigErrors) as exc:
        errors = exc.errors if isinstance(exc, ConfigErrors) else [exc]
    hits = [e for e in errors if e.path == path]
    assert hits, [(e.path, e.detail) for e in errors]
    assert words in hits[0].detail and hits[0].file == str(f)
