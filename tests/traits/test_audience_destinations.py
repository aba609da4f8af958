"""Audiences sent to list-style destinations (docs/traits.md, "Audiences"): one conn
audience synced in ``mode: mirror`` to Mailchimp (a tag), a Meta custom audience and a
HubSpot static list, through the real runtime and the real plugins, against a loopback
of the three vendors built from their documented shapes (``list_vendors``).

After every run each vendor holds exactly the consenting members (joining adds, leaving
removes, as in a plain model of mirror semantics); a person who does not consent is
never in a request that adds people, and one who never consented is in no request at
all; no Mailchimp member is archived (leaving removes the tag only)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from tests.traits.list_vendors import HS_LIST, MC_LIST, META_AUDIENCE, Vendors
from tests.traits.test_audiences import member, scenarios

mc_plugin = pytest.importorskip("conn_destination_mailchimp.plugin")
meta_plugin = pytest.importorskip("conn_destination_meta_audiences.plugin")
hs_plugin = pytest.importorskip("conn_destination_hubspot.plugin")

_n = itertools.count()
PEOPLE = 6
TAG = "big_spenders"


def email(i: int) -> str:
    return f"u{i}@example.com"


def _project(folder: Path, url: str) -> Path:
    retry = {"max_attempts": 4}
    sync = {"source": "wh", "stream": "people", "primary_key": "id", "mode": "mirror",
            "audience": "big", "consent": {"columns": {"ads": "ok"}}}
    doc = {
        "version": 1,
        "sources": {"wh": {"type": "memory"}},
        "destinations": {
            "mc": {"type": "mailchimp", "purposes": ["ads"], "config": {
                "api_key": "0123456789abcdef-us6", "list_id": MC_LIST, "tag": TAG,
                "base_url": url + "/3.0", **retry}},
            "meta": {"type": "meta_audiences", "purposes": ["ads"], "config": {
                "access_token": "meta-test-token-0000", "audience_id": META_AUDIENCE,
                "hash_in_destination": True, "base_url": url, **retry}},
            "hs": {"type": "hubspot", "purposes": ["ads"], "config": {
                "access_token": "pat-test-token-0000", "base_url": url,
                "lists": {"big": HS_LIST}, "retry": {"base_delay": 0.01}}},
        },
        "traits": {"spend": {"source": "wh", "stream": "orders", "key": "customer",
                             "aggregate": "sum", "column": "amount"}},
        "audiences": {"big": {"where": {"all": ["spend > 100", {
            "any": ["plan = 'pro'", "spend > 500"]}]}}},
        "syncs": {
            "big_to_mailchimp": {**sync, "destination": "mc", "object": "members",
                                 "match_key": "email_address",
                                 "mapping": {"email_address": "email"}},
            "big_to_meta": {**sync, "destination": "meta", "object": "audience",
                            "match_key": "email", "mapping": {"email": "email"}},
            "big_to_hubspot": {**sync, "destination": "hs", "object": "big",
                               "match_key": "email", "mapping": {"email": "email"}},
        },
    }
    folder.mkdir(parents=True)
    (folder / "conn.yml").write_text(yaml.safe_dump(doc))
    return folder / "conn.yml"


def run_scenario(folder: Path, runs: list[list[tuple[str, int, str]]]) -> None:
    """Run the three syncs once per entry of ``runs`` (per person: plan, spend,
    consent) and check the vendors against the model after each run."""
    from conn.config.load import load_project
    from conn.plugins import Registry
    from conn.runtime.runner import run_syncs
    from conn.state.backends.memory import MemoryStateStore
    from conn.testing.http import FaultServer

    from tests import fakes

    fakes.reset()
    reg = Registry(autoload=False)
    for module in (fakes, mc_plugin, meta_plugin, hs_plugin):
        reg.add_module(module)
    people = [email(i) for i in range(PEOPLE)]
    vendors = Vendors(people)
    store = MemoryStateStore()
    consented: set[str] = set()
    with FaultServer(seed=0) as srv:
        vendors.serve(srv)
        project = load_project(_project(folder, srv.url), registry=reg)
        for rows in runs:
            ids = [str(i) for i in range(len(rows))]
            fakes.TABLES["people"] = (pa.table({
                "id": ids, "email": [email(i) for i in range(len(rows))],
                "plan": [r[0] for r in rows], "ok": [r[2] for r in rows]}), ("id",))
            fakes.TABLES["orders"] = (pa.table({
                "customer": [int(i) for i in ids for _ in range(2)],
                "amount": [r[1] / 2 for r in rows for _ in range(2)]}), ())
            for kind in vendors.seen.values():
                kind.clear()
            report = run_syncs(project, list(project.syncs.values()), reg, store=store)
            for s in report.syncs:
                assert s.status == "ok", (s.name, s.error)
            want = {email(i) for i, (plan, spend, ok) in enumerate(rows)
                    if member(plan, spend) and ok == "yes"}
            assert vendors.mailchimp_tagged(TAG) == want
            assert vendors.meta() == want
            assert vendors.hubspot() == want
            assert vendors.archived == 0
            refusing = {email(i) for i, r in enumerate(rows) if r[2] != "yes"}
            consented |= {email(i) for i, r in enumerate(rows) if r[2] == "yes"}
            assert not vendors.seen["add"] & refusing, "a non-consenting person was added"
            never = set(people) - consented
            touched = set().union(*vendors.seen.values())
            assert not touched & never, "a person who never consented was sent"


def test_join_leave_and_withdrawn_consent(tmp_path: Path) -> None:
    """Fixed runs: members join, one leaves by spending less, one withdraws consent, one
    never consents; then everyone leaves."""
    big, small = ("pro", 200, "yes"), ("free", 50, "yes")
    runs: list[list[tuple[str, int, str]]] = [
        [big, big, small, ("pro", 800, "no"), small, ("free", 800, "yes")],
        [small, big, big, ("pro", 800, "no"), small, ("free", 800, "yes")],
        [small, ("pro", 200, "no"), big, ("pro", 800, "no"), big, ("free", 800, "yes")],
        [small] * PEOPLE,
    ]
    run_scenario(tmp_path / "p", runs)


@pytest.mark.slow
@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenarios())
def test_random_memberships_follow_mirror_semantics(tmp_path: Path, sc: dict[str, Any]
                                                    ) -> None:
    runs = [(rows + [("free", 0, "no")] * PEOPLE)[:PEOPLE] for rows in sc["runs"]]
    run_scenario(tmp_path / f"r{next(_n)}", runs)
