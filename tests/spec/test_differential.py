"""Differential test: the real ``conn`` CLI against the documented semantics.

A hypothesis state machine builds a random DuckDB warehouse (customers with BIGINT or
VARCHAR keys, a consent column of a random type, a consent event stream), declares syncs
in every mode into every kind of first-party destination (files with ``materialize``,
webhook on a loopback receiver, PostgreSQL, a Singer target), then drives random
sequences of changes: grants, withdrawals, updates, deletes, type changes, invalid
e-mails, null and duplicate keys, full re-syncs, a refused ``drop`` policy and a moved
destination. After every run it compares each destination's content, the ``--json``
counts and ``conn rejected SYNC --json`` with :mod:`tests.spec.model`.

Profiles: the default (``make test``) runs a few short examples; ``CONN_SPEC_PROFILE=long``
runs many (``CONN_SPEC_EXAMPLES`` and ``CONN_SPEC_STEPS`` override the counts, and
``CONN_SPEC_SEED`` fixes hypothesis' seed), see README.md, "Development".
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, Verbosity, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

from tests.conftest import unavailable
from tests.spec import harness, model
from tests.spec.harness import KIND_MODES, SourceRow, Warehouse
from tests.spec.model import ConsentConfig, ConsentEvent

ROOT = Path(__file__).resolve().parents[2]
PROFILE = os.environ.get("CONN_SPEC_PROFILE", "short")
LONG = PROFILE == "long"
VERBOSE = bool(os.environ.get("CONN_SPEC_VERBOSE"))
#: Destination kinds driven (``CONN_SPEC_KINDS=files,hook`` narrows them while debugging).
KINDS = os.environ.get("CONN_SPEC_KINDS", "files,hook,pg,singer").split(",")
EXAMPLES = int(os.environ.get("CONN_SPEC_EXAMPLES", 40 if LONG else 2))
STEPS = int(os.environ.get("CONN_SPEC_STEPS", 8 if LONG else 3))

# --- value pools (small, so that keys and values collide often) -----------------------

NAMES = ["Ann", "Bo", "Renée", "Zoë Q", None]
LTVS = [0.0, 1.5, -2.25, 10.0, 1234.5, None, float("nan"), float("inf"), float("-inf")]
GOOD_EMAILS = ["u{}@x.org", " U{}@X.org ", "first.last{}@mail.example.com"]
BAD_EMAILS = ["not-an-email", "x@", "@x.org"]
BOOL_VALUES = [True, False, None]
INT_VALUES = [1, 0, 7, -1, None]
VARCHAR_VALUES: list[Any] = [
    "granted", " Yes ", "OPT_IN", "subscribed", "1", "t",          # grants
    "denied", "No", "withdrawn", "opt_out", "0", "revoked",        # denials
    "maybe", "", "  ", "opt in", "2", "granted!",                  # malformed
    None]
VARCHAR_VALUES += list(model.NEAR_MISSES)
STATUSES = [v for v in VARCHAR_VALUES if v is not None] + [None]
#: Event instants (epoch seconds; None: missing or unreadable), a day apart so that ties
#: and order both occur; spelled per the column's type by Warehouse.spell_time.
TIMES = [1704067200, 1704153600, 1704240000, None]
PURPOSES = ("marketing", "service")


def consent_values(kind: str) -> list[Any]:
    return {"BOOLEAN": BOOL_VALUES, "INTEGER": INT_VALUES, "VARCHAR": VARCHAR_VALUES}[kind]


# --- the example's configuration ------------------------------------------------------


@st.composite
def setups(draw: st.DrawFn) -> dict[str, Any]:
    """One random project: key type, consent settings, policies, kinds and modes."""
    key_type = draw(st.sampled_from(["BIGINT", "VARCHAR"]))
    purposes = draw(st.sampled_from([("marketing",), ("marketing", "service"), ()]))
    columns = {"marketing": "opt_in"} if draw(st.booleans()) and "marketing" in purposes else {}
    events = draw(st.booleans()) if purposes else False
    basis_pool = {"marketing": "legitimate_interests", "service": "contract"}
    legal = {p: basis_pool[p] for p in purposes if draw(st.booleans())}
    # consent.md: gate.issues() reports "a purpose nothing could ever allow".
    for p in purposes:
        if p not in columns and not events and p not in legal:
            legal[p] = basis_pool[p]
    mode_pool = list(dict.fromkeys(m for modes in KIND_MODES.values() for m in modes))
    if LONG:
        modes = draw(st.lists(st.sampled_from(mode_pool), min_size=1, max_size=5,
                              unique=True))
    else:
        # Few examples: each has mirror (deletions, withdrawals) and one other mode.
        modes = ["mirror", draw(st.sampled_from([m for m in mode_pool if m != "mirror"]))]
    return {
        "key_type": key_type,
        "numeric_text_keys": key_type == "VARCHAR" and draw(st.booleans()),
        "consent_type": draw(st.sampled_from(["BOOLEAN", "INTEGER", "VARCHAR"])),
        "time_type": draw(st.sampled_from(["TIMESTAMP", "VARCHAR", "BIGINT"])),
        "subject_type": key_type if key_type == "VARCHAR" or draw(st.booleans()) else "VARCHAR",
        "consent": ConsentConfig(purposes, columns, events, legal),
        "email_policy": draw(st.sampled_from(["allow", "allow", "hash", "mask"])),
        "ltv_cast": draw(st.booleans()),
        "modes": sorted(modes),
    }


#: One change to the warehouse: (what, arguments drawn by hypothesis).
CHANGES = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 30), st.integers(0, 2), st.booleans(),
              st.integers(0, 100), st.integers(0, 100)),
    st.tuples(st.just("email"), st.integers(0, 100), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("ltv"), st.integers(0, 100), st.integers(0, 100)),
    st.tuples(st.just("name"), st.integers(0, 100), st.integers(0, 100)),
    st.tuples(st.just("consent"), st.integers(0, 100), st.integers(0, 100)),
    st.tuples(st.just("delete"), st.integers(0, 100)),
    st.tuples(st.just("duplicate"), st.integers(0, 100), st.integers(0, 100),
              st.integers(0, 100)),
    st.tuples(st.just("null_key"), st.integers(0, 100)),
    st.tuples(st.just("event"), st.integers(0, 40), st.integers(0, 1), st.integers(0, 100),
              st.integers(0, 3), st.integers(0, 5)),
    st.tuples(st.just("ltv_type")),
    st.tuples(st.just("consent_type"), st.integers(0, 2), st.integers(0, 1000)),
)


class Differential(RuleBasedStateMachine):
    """The real CLI and :mod:`tests.spec.model`, run side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="conn-spec-", dir=os.environ.get("CONN_SPEC_TMP")))
        self.receiver: harness.Receiver | None = None
        self.pg_schema: str | None = None
        self.runs = 0
        self.verified: dict[str, tuple[Any, ...]] = {}

    # -- set-up ------------------------------------------------------------------------

    @initialize(setup=setups(), changes=st.lists(CHANGES, min_size=2, max_size=10))
    def start(self, setup: dict[str, Any], changes: list[tuple[Any, ...]]) -> None:
        self.setup = setup
        self.kinds = [k for k in KIND_MODES if k in KINDS]
        self.wh = Warehouse(setup["key_type"], setup["consent_type"], setup["subject_type"],
                            setup["time_type"])
        self.receiver = harness.Receiver()
        if "pg" in self.kinds:
            self.pg_schema = f"spec_{uuid.uuid4().hex[:12]}"
            with harness.pg_connect() as con:
                con.execute(f'create schema "{self.pg_schema}"')
        self.moved: dict[str, str] = {}          # sync -> the destination it moved to
        self.refuse_policy = False
        self.syncs: dict[str, model.SyncModel] = {}
        for kind in self.kinds:
            for mode in setup["modes"]:
                if mode in KIND_MODES[kind]:
                    self.syncs[f"{kind}_{mode}"] = self.new_model(kind, mode)
        for change in changes:
            self.apply(change)
        self.run_and_compare()

    def new_model(self, kind: str, mode: str) -> model.SyncModel:
        return model.SyncModel(
            name=f"{kind}_{mode}", mode=mode, consent=self.setup["consent"],
            email_policy=self.setup["email_policy"],
            # PostgreSQL declares no value capability: the strict JSON rule applies.
            obj=model.ObjectProfile(declares_fields=kind in ("files", "singer")),
            dest=model.DestinationModel(update_unknown_rejected=kind in ("hook", "pg")),
            ltv_cast=self.setup["ltv_cast"] or kind == "pg")

    def teardown(self) -> None:
        if self.receiver:
            self.receiver.close()
        if self.pg_schema:
            with harness.pg_connect() as con:
                con.execute(f'drop schema if exists "{self.pg_schema}" cascade')
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- changes -----------------------------------------------------------------------

    def key_for(self, n: int) -> Any:
        if self.wh.key_type == "BIGINT":
            return n
        return str(n) if self.setup["numeric_text_keys"] else f"c{n}"

    def email_for(self, n: int, variant: int, bad: bool) -> str:
        return BAD_EMAILS[variant] if bad else GOOD_EMAILS[variant].format(n)

    def pick(self, n: int) -> SourceRow | None:
        return self.wh.rows[n % len(self.wh.rows)] if self.wh.rows else None

    def same_key(self, row: SourceRow) -> list[SourceRow]:
        return [r for r in self.wh.rows if r.key == row.key and r.key is not None] or [row]

    def ltv_value(self, i: int) -> Any:
        value = LTVS[i % len(LTVS)]
        if self.wh.ltv_type == "VARCHAR":
            # An unreadable number now and then: the mapper's coercion rejects it.
            return "n/a" if i % 7 == 6 else None if value is None else repr(value)
        return value

    def apply(self, change: tuple[Any, ...]) -> None:
        """One change to the warehouse. Fields that decide a row's mapper verdict (email,
        ltv) are kept equal across rows of one key (see ``SourceRow``) so that "the first
        row of a key wins" is decided by source order and the gate alone."""
        what, *args = change
        wh = self.wh
        if what == "add":
            n, variant, bad, ltv, consent = args
            # A new customer (repeats of a key come from "duplicate"): the first free
            # number from n on, so that keys stay small and collide with consent events.
            used = {r.key for r in wh.rows}
            while self.key_for(n) in used:
                n += 1
            key = self.key_for(n)
            email = self.email_for(n, variant, bad and n % 3 == 0)
            ltv_v = self.ltv_value(ltv)
            values = consent_values(wh.consent_type)
            wh.rows.append(SourceRow(wh.next_seq, key, email, NAMES[n % len(NAMES)], ltv_v,
                                     values[consent % len(values)]))
            wh.next_seq += 1
        elif what == "email" and wh.rows:
            n, variant, bad = args
            row = self.pick(n)
            for r in self.same_key(row):
                r.email = self.email_for(n, variant, bad)
        elif what == "ltv" and wh.rows:
            n, i = args
            row = self.pick(n)
            for r in self.same_key(row):
                r.ltv = self.ltv_value(i)
        elif what == "name" and wh.rows:
            n, i = args
            self.pick(n).name = NAMES[i % len(NAMES)]
        elif what == "consent" and wh.rows:
            n, i = args
            values = consent_values(wh.consent_type)
            self.pick(n).consent = values[i % len(values)]
        elif what == "delete" and wh.rows:
            wh.rows.remove(self.pick(args[0]))
        elif what == "duplicate" and wh.rows:
            n, name, consent = args
            row = self.pick(n)
            values = consent_values(wh.consent_type)
            wh.rows.append(SourceRow(wh.next_seq, row.key, row.email, NAMES[name % len(NAMES)],
                                     row.ltv, values[consent % len(values)]))
            wh.next_seq += 1
        elif what == "null_key":
            values = consent_values(wh.consent_type)
            wh.rows.append(SourceRow(wh.next_seq, None, self.email_for(args[0], 0, False),
                                     "Nil", 1.5 if wh.ltv_type == "DOUBLE" else "1.5",
                                     values[args[0] % len(values)]))
            wh.next_seq += 1
        elif what == "event":
            n, purpose, status, time, spelling = args
            subject = self.key_for(n)
            if wh.subject_type == "VARCHAR":
                subject = str(subject)
            wh.events.append((subject, PURPOSES[purpose], STATUSES[status % len(STATUSES)],
                              TIMES[time], spelling))
        elif what == "ltv_type":
            wh.ltv_type = "VARCHAR" if wh.ltv_type == "DOUBLE" else "DOUBLE"
            for r in wh.rows:
                if wh.ltv_type == "VARCHAR":
                    r.ltv = None if r.ltv is None else repr(r.ltv)
                else:
                    try:
                        r.ltv = None if r.ltv is None else float(r.ltv)
                    except ValueError:
                        r.ltv = None
        elif what == "consent_type":
            kind, salt = args
            wh.consent_type = ["BOOLEAN", "INTEGER", "VARCHAR"][kind]
            values = consent_values(wh.consent_type)
            for i, r in enumerate(wh.rows):
                r.consent = values[(salt + i) % len(values)]

    # -- rules -------------------------------------------------------------------------

    @rule(changes=st.lists(CHANGES, min_size=2, max_size=6),
          then=st.sampled_from(["run", "run", "run", "full_resync", "dry_run",
                                "refused_drop_policy", "move_destination"]),
          pick=st.integers(0, 20))
    def change_and_run(self, changes: list[tuple[Any, ...]], then: str, pick: int) -> None:
        """Some changes to the warehouse, then a run: a plain one, with ``--full-resync``
        (sync-modes.md: it "plans every valid row as an insert (new key) or update (known
        key), whatever its hash"), after a dry run, after a refused configuration, or of a
        sync whose destination moved."""
        for change in changes:
            self.apply(change)
        if then == "refused_drop_policy":
            self.refused_drop_policy()
        if then == "dry_run":
            self.dry_run()
        if then == "move_destination":
            self.move_destination(pick)
            return
        self.run_and_compare(full_resync=then == "full_resync")
        STATS[f"examples with {self.wh.key_type} keys"] += self.runs == 2

    def dry_run(self) -> None:
        """sync-modes.md: "``--dry-run`` plans but never commits: the state is unchanged";
        README: "``--dry-run``: the exact records [...] would get". Nothing reaches any
        destination, and the next real run plans as if the dry run never happened."""
        self.write_project()
        before = {s: self.content(s) for s in self.syncs}
        dests = sorted({self.dest_of(s) for s in self.syncs})
        done = harness.conn_parallel([("sync", "wh", d, "--dry-run", "--json") for d in dests],
                                     self.dir)
        for dest, p in zip(dests, done, strict=True):
            assert p.returncode in (0, 4), (dest, p.returncode, p.stderr[-2000:])
        assert {s: self.content(s) for s in self.syncs} == before
        STATS["dry runs"] += 1

    def refused_drop_policy(self) -> None:
        """consent.md, "Field policies": ``drop``: "never leaves conn (a mapping that uses
        it is refused)". A drop policy on the mapped ``name`` makes the run a
        configuration error (exit 3) that names the field; nothing is sent or stored."""
        files = sorted(s for s in self.syncs if s.startswith("files_"))
        if not files:
            return
        dest = self.dest_of(files[0])
        self.refuse_policy = True
        STATS["refused drop policies"] += 1
        try:
            self.write_project()
            before = {s: self.content(s) for s in files}
            p = harness.conn("sync", "wh", dest, "--json", cwd=self.dir)
            assert p.returncode == 3, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
            assert "name" in p.stdout + p.stderr, p.stdout + p.stderr
            assert {s: self.content(s) for s in before} == before
        finally:
            self.refuse_policy = False

    def move_destination(self, pick: int) -> None:
        """A sync's ``destination:`` changes to another destination of the same kind.

        sync-modes.md, "When a sync's target changes": "a run whose sync now points
        elsewhere is refused (exit 3) with every changed part named"; with
        ``--new-target`` "The sync starts it from scratch (every row is sent to it)";
        "the old target keeps what it has, also in mirror mode"."""
        movable = sorted(s for s in self.syncs
                         if s.split("_")[0] in ("files", "hook") and s not in self.moved)
        if not movable:
            self.run_and_compare()
            return
        name = movable[pick % len(movable)]
        kind = name.split("_")[0]
        old_dest, new_dest = self.dest_of(name), f"{kind}_b"
        self.moved[name] = new_dest
        old = self.syncs[name]
        self.syncs[name] = self.new_model(kind, old.mode)
        self.verified.pop(name, None)
        if not old.bound:
            # Nothing was ever acknowledged or rejected: no target to protect yet.
            self.run_and_compare(only={new_dest})
            return
        self.write_project()
        others = {s: self.content(s) for s in self.syncs if s != name
                  and self.dest_of(s) == new_dest}
        p = harness.conn("sync", "wh", new_dest, "--json", cwd=self.dir)
        assert p.returncode == 3, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
        text = p.stdout + p.stderr
        assert "--new-target" in text and old_dest in text and new_dest in text, text
        # architecture.md, "Set-up": every configuration problem is found "before a row is
        # read", so the refused command sends nothing, for no sync.
        assert {s: self.content(s) for s in others} == others, (
            f"conn sync wh {new_dest} exited 3 (target of {name} changed) but delivered "
            "rows of other syncs")
        self.run_and_compare(extra_args=("--new-target",), only={new_dest})
        kept = sorted(map(model.canonical, self.content(name, old_dest, old.mode)))
        assert kept == sorted(map(model.canonical, old.dest.content())), (
            f"{old_dest} changed after {name} moved to {new_dest}")
        STATS["moved destinations"] += 1

    # -- running and comparing ---------------------------------------------------------

    def dest_of(self, sync: str) -> str:
        return self.moved.get(sync, sync.split("_")[0])

    def write_project(self) -> None:
        self.wh.write(self.dir / "wh.duckdb")
        harness.dump_yaml(self.project(), self.dir / "conn.yml")

    def project(self) -> dict[str, Any]:
        """conn.yml of the example (README "How it works", consent.md "Configuration
        reference", each plugin's README)."""
        s = self.setup
        integer = self.wh.key_type == "BIGINT"
        props = {"customer_id": {"type": "integer" if integer else "string"},
                 "email": {"type": ["string", "null"], "format": "email"},
                 "name": {"type": ["string", "null"]},
                 "ltv": {"type": ["number", "null"]}}
        objects = sorted({f"c_{m}" for m in s["modes"]})
        out = self.dir
        purposes = list(s["consent"].purposes)
        dests: dict[str, Any] = {}
        for suffix in ("", "_b"):
            dests[f"files{suffix}"] = {"type": "files", "purposes": purposes, "config": {
                "path": str(out / f"files{suffix}"), "materialize": True, "fsync": False,
                "objects": {o: {"identifiers": ["customer_id"],
                                "fields": {"type": "object", "properties": props}}
                            for o in objects}}}
            dests[f"hook{suffix}"] = {"type": "webhook", "purposes": purposes, "config": {
                "url": f"{self.receiver.url}/hook{suffix}", "max_attempts": 2,
                "objects": [{"name": o, "identifiers": ["customer_id"]} for o in objects]}}
        if "pg" in self.kinds:
            cols = {"customer_id": "bigint" if integer else "text", "email": "text",
                    "name": "text", "ltv": "double precision"}
            dests["pg"] = {"type": "postgres", "purposes": purposes, "config": {
                **harness.PG, "schema": self.pg_schema, "tables": {
                    o: {"key": "customer_id", "create_table": True, "columns": cols}
                    for o in objects}}}
        dests["singer"] = {"type": "singer", "purposes": purposes, "config": {
            "command": str(SINGER_TARGET),
            "config": {"destination_path": str(out / "singer"), "do_timestamp_file": False},
            "objects": [{"name": o, "identifiers": ["customer_id"], "fields": props}
                        for o in objects]}}
        (out / "singer").mkdir(exist_ok=True)
        consent: dict[str, Any] = {}
        c = s["consent"]
        if c.columns:
            consent["columns"] = dict(c.columns)
        if c.events:
            consent["source"] = "consent_events"
        if c.legal_basis:
            consent["legal_basis"] = dict(c.legal_basis)
        syncs = {}
        for name, m in self.syncs.items():
            kind = name.split("_")[0]
            mapping: dict[str, Any] = {
                "customer_id": "customer_id",
                "email": {"from": "email", "transforms": ["trim", "lower"]},
                "name": "name",
                "ltv": {"from": "ltv", "cast": "number"} if m.ltv_cast else "ltv"}
            sync = {"source": "wh", "stream": "people", "destination": self.dest_of(name),
                    "object": f"c_{m.mode}", "primary_key": "customer_id",
                    "match_key": "customer_id", "mode": m.mode, "mapping": mapping}
            if consent:
                sync["consent"] = consent
            policies = {"email": s["email_policy"]}
            if self.refuse_policy and kind == "files":
                policies["name"] = "drop"
            sync["policies"] = policies
            # consent.md, "Kinds": tags decide the normaliser (hash) and the hint (mask).
            sync["personal"] = {"email": "email"}
            syncs[name] = sync
        project: dict[str, Any] = {
            "version": 1,
            "sources": {"wh": {"type": "duckdb", "config": {
                "path": str(out / "wh.duckdb"),
                "streams": {"people": {
                    "query": "select customer_id, email, name, ltv, opt_in "
                             "from customers order by seq",
                    "primary_key": ["customer_id"]}}}}},
            "destinations": dests, "syncs": syncs}
        if c.events:
            project["consent_sources"] = {"consent_events": {
                "source": "wh", "stream": "consent_events", "subject": "subject",
                "purpose": "purpose", "status": "status", "timestamp": "updated_at"}}
        return project

    def rows(self) -> list[tuple[Any, dict[str, Any]]]:
        return [(r.key, {"email": r.email, "name": r.name, "ltv": r.ltv, "opt_in": r.consent})
                for r in sorted(self.wh.rows, key=lambda r: r.seq)]

    def events(self) -> list[ConsentEvent]:
        return [ConsentEvent(s, p, status, t) for s, p, status, t, _ in self.wh.events]

    def content(self, sync: str, dest: str | None = None,
                mode: str | None = None) -> list[dict[str, Any]]:
        """What the sync's current destination object (or ``dest``'s) holds."""
        mode = mode or self.syncs[sync].mode
        dest, obj = dest or self.dest_of(sync), f"c_{mode}"
        kind = sync.split("_")[0]
        if kind == "files":
            return harness.files_content(self.dir / dest, obj)
        if kind == "hook":
            return self.receiver.content(dest, obj)
        if kind == "pg":
            return harness.pg_content(self.pg_schema, obj)
        return harness.singer_content(self.dir / "singer", obj, "customer_id",
                                      mode == "append")

    def run_and_compare(self, *, full_resync: bool = False, extra_args: tuple[str, ...] = (),
                        only: set[str] | None = None) -> None:
        self.write_project()
        self.runs += 1
        STATS["runs"] += 1
        STATS["full re-syncs"] += full_resync
        rows, events = self.rows(), self.events()
        by_dest: dict[str, list[str]] = {}
        for name in self.syncs:
            by_dest.setdefault(self.dest_of(name), []).append(name)
        flags = ("--full-resync",) if full_resync else ()
        dests = sorted(d for d in by_dest if only is None or d in only)
        expected = {n: self.syncs[n].run(rows, events, full_resync=full_resync)
                    for d in dests for n in by_dest[d]}
        # One process per destination, all at once: sync-modes.md, "One file per sync, so
        # different syncs run in parallel processes".
        t0 = time.monotonic()
        done = harness.conn_parallel(
            [("sync", "wh", d, "--json", *flags, *extra_args) for d in dests], self.dir)
        if VERBOSE:
            print(f"conn sync x{len(dests)}: {time.monotonic() - t0:.2f} s")
        for dest, p in zip(dests, done, strict=True):
            names = by_dest[dest]
            context = f"conn sync wh {dest} (run {self.runs}) in {self.dir}"
            try:
                report = json.loads(p.stdout)
            except ValueError:
                raise AssertionError(f"{context}: exit {p.returncode}, no JSON:\n"
                                     f"{p.stdout[-2000:]}\n{p.stderr[-3000:]}") from None
            got = {s["name"]: s for s in report["syncs"]}
            assert set(got) == set(names), (context, sorted(got), names)
            for name in names:
                if VERBOSE:
                    print(f"run {self.runs} {name}:", {k: got[name].get(k) for k in model.COUNTS})
                self.compare_run(name, got[name], expected[name], context)
            want_rc = 4 if any(expected[n].counts["rejected"] for n in names) else 0
            assert p.returncode == want_rc, (context, p.returncode, p.stderr[-2000:])
        self.compare_rejected(only)
        if only is None:
            self.compare_explain(rows, events)

    def compare_run(self, name: str, got: dict[str, Any], want: model.RunResult,
                    context: str) -> None:
        m = self.syncs[name]
        STATS["sync runs"] += 1
        STATS.update({f"{k} ({m.mode})": v for k, v in want.counts.items() if k != "pending"})
        assert got.get("error") is None, (context, name, got.get("error"))
        counts = {k: got.get(k) for k in model.COUNTS}
        assert counts == want.counts, (
            f"{context}: sync {name} counts\n conn:  {counts}\n model: {want.counts}\n"
            f" rejection reasons: {got.get('rejection_reasons')}")
        if m.consent.purposes:
            by_reason = got["consent"]["withheld_by_reason"]
            assert by_reason == want.withheld_by_reason, (context, name, by_reason,
                                                          want.withheld_by_reason)
            bases = {p: {b: n for b, n in per.items() if n}
                     for p, per in (got.get("legal_bases") or {}).items()}
            bases = {p: per for p, per in bases.items() if per}
            assert bases == want.legal_bases, (context, name, bases, want.legal_bases)
        actual = sorted(self.content(name), key=model.canonical)
        expected = m.dest.content()
        assert list(map(model.canonical, actual)) == list(map(model.canonical, expected)), (
            f"{context}: sync {name} destination content differs\n"
            f" only in conn's destination: {diff(actual, expected)}\n"
            f" only in the model: {diff(expected, actual)}")

    def compare_explain(self, rows: list[tuple[Any, dict[str, Any]]],
                        events: list[ConsentEvent]) -> None:
        """``conn explain SUBJECT --json`` for one subject per run (in turn): consent.md,
        "conn explain": "which record or legal basis allows or blocks each purpose, which
        fields would be sent [...] and the exact values after policies"; "It runs the same
        gate and mapper as ``conn sync``". Subjects with one row only (several rows of one
        key may be decided differently, and explain shows a person)."""
        single = [k for k, n in Counter(k for k, _ in rows).items() if n == 1 and k is not None]
        if not single:
            return
        key = sorted(single, key=repr)[self.runs % len(single)]
        row = next(r for k, r in rows if k == key)
        p = harness.conn("explain", str(key), "--json", cwd=self.dir)
        assert p.returncode == 0, (key, p.returncode, p.stderr[-2000:])
        got = {s["sync"]: s for s in json.loads(p.stdout)["syncs"]}
        STATS["explain subjects compared"] += 1
        for name, m in self.syncs.items():
            s = got[name]
            context = f"conn explain {key} (run {self.runs}) in {self.dir}: sync {name}"
            decision = model.gate(row, key, m.consent, events)
            mapped = model.map_row(row, key, m.email_policy, m.obj, m.ltv_cast)
            assert s["found"] is True, (context, s)
            for purpose, code in decision.codes.items():
                c = s["consent"][purpose]
                assert (c["decision"], c["allowed"]) == (code.reason, purpose in decision.bases), (
                    context, purpose, c, code)
                if purpose in decision.bases:
                    assert c["legal_basis"] == decision.bases[purpose], (context, purpose, c)
            if isinstance(mapped, model.Rejected):
                continue  # the docs do not say what explain shows for a mapper rejection
            assert s["would_send"] is decision.passes, (context, s["would_send"], decision)
            if decision.passes:
                assert s["records"] == [mapped], (context, s["records"], mapped)

    def compare_rejected(self, only: set[str] | None) -> None:
        """``conn rejected SYNC --json`` lists exactly the rejections of the model (plus,
        at most, the ones the docs leave open and the known pending findings)."""
        names = [n for n in self.syncs if only is None or self.dest_of(n) in only]
        if not (LONG and self.runs % 3 == 0):
            # Only syncs whose expected listing changed since it was last verified (an
            # unchanged state cannot list differently without a rejection or an
            # acknowledgement, which the counts compare); every sync every third run of
            # the long profile.
            names = [n for n in names
                     if self.listing(n) != self.verified.get(n, ([], [], []))]
        t0 = time.monotonic()
        results = harness.conn_parallel([("rejected", n, "--json", "-n", "1000")
                                         for n in names], self.dir)
        if VERBOSE:
            print(f"conn rejected x{len(names)}: {time.monotonic() - t0:.2f} s")
        for name, p in zip(names, results, strict=True):
            m = self.syncs[name]
            assert p.returncode == 0, (name, p.returncode, p.stderr[-2000:])
            entries = json.loads(p.stdout)["rejected"]
            listed = Counter(key_text(r["key"]) for r in entries)
            required = {key_text(k) for k in m.rejections}
            allowed = required | {key_text(k) for k in m.optional}
            assert required <= set(listed) <= allowed, (
                f"conn rejected {name} (run {self.runs}) in {self.dir}\n"
                f" listed: {sorted(listed)}\n required: {sorted(required)}\n"
                f" allowed: {sorted(allowed)}\n model: {m.rejections}")
            # sync-modes.md, "What is stored": rejections are kept per key; rows without
            # a key are each listed.
            twice = {k: n for k, n in listed.items() if n > 1 and k != key_text(None)}
            assert not twice, (
                f"conn rejected {name} (run {self.runs}) lists keys more than once: {twice}")
            for entry in entries:
                want = {key_text(k): n for k, n in m.attempts.items()}.get(
                    key_text(entry["key"]))
                if want is not None and entry["key"] is not None:
                    assert entry["attempts"] == want, (
                        f"conn rejected {name} (run {self.runs}) in {self.dir}: attempts of "
                        f"{entry['key']!r}: {entry['attempts']}, model {want}")
            self.verified[name] = self.listing(name)
            STATS["rejected listings compared"] += 1

    def listing(self, name: str) -> tuple[Any, ...]:
        m = self.syncs[name]
        return (sorted(map(repr, m.rejections.items())), sorted(map(repr, m.optional)),
                sorted(map(repr, m.attempts.items())))


#: What the runs of this process did, by count and mode (printed with CONN_SPEC_VERBOSE).
STATS: Counter[str] = Counter()


def key_text(key: Any) -> str:
    """A key as ``conn rejected`` should show it: its JSON value (sync-modes.md: keys keep
    their type: "``conn rejected`` lists ``2``, not ``"2"``")."""
    return json.dumps(key)


def diff(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = Counter(model.canonical(r) for r in b)
    out = []
    for r in a:
        c = model.canonical(r)
        if keys[c]:
            keys[c] -= 1
        else:
            out.append(r)
    return out


# --- availability of the services and the Singer target -------------------------------


def _pg_available() -> bool:
    try:
        import psycopg  # noqa: F401

        with harness.pg_connect() as con:
            con.execute("select 1")
        return True
    except Exception:
        return False


PG_AVAILABLE = _pg_available()
SINGER_TARGET: Path = Path()


@pytest.fixture(scope="module", autouse=True)
def _services() -> None:
    global SINGER_TARGET
    if not PG_AVAILABLE:
        unavailable("PostgreSQL at 127.0.0.1:5432 (database test) is not reachable")
    from conn.testing.singer import connector_venv

    try:
        venv = connector_venv("target-jsonl", "target-jsonl", root=ROOT)
        SINGER_TARGET = venv / "bin" / "target-jsonl"
    except Exception as exc:
        unavailable(f"cannot install target-jsonl: {exc}")


SETTINGS = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None, print_blob=True,
    # Shrinking re-runs the CLI hundreds of times: off unless CONN_SPEC_SHRINK is set.
    phases=[Phase.explicit, Phase.reuse, Phase.generate]
    + ([Phase.shrink] if os.environ.get("CONN_SPEC_SHRINK") else []),
    verbosity=Verbosity.verbose if VERBOSE else Verbosity.normal)


@pytest.mark.slow
def test_differential() -> None:
    """The CLI agrees with the model on every run of every example."""
    machine: Any = Differential
    # The short profile draws the same examples on every `make test` (seed 1); the long
    # one new ones each time, unless CONN_SPEC_SEED names a seed.
    chosen = os.environ.get("CONN_SPEC_SEED", "" if LONG else "1")
    if chosen:
        machine = seed(int(chosen))(Differential)
    # Every example takes all its steps: a run after a few changes is where state,
    # deletions and retries are compared, and a short profile has few examples.
    try:
        run_state_machine_as_test(machine, settings=SETTINGS, _min_steps=STEPS)
    finally:
        if VERBOSE:
            print("totals:", json.dumps(dict(sorted(STATS.items())), indent=1))
