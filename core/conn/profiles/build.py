"""``conn profiles build``: read the edges, stitch, keep ids, compute golden records,
store them."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from conn.config.profiles import ProfileSet, profile_sets
from conn.errors import ConfigError
from conn.profiles import engine, golden, matching, refresh, store
from conn.profiles.edges import normalise, read_edges

if TYPE_CHECKING:
    from conn.config.model import Project
    from conn.plugins import Registry

log = logging.getLogger("conn.profiles")


def rules_of(ps: ProfileSet) -> engine.Rules:
    """The engine's rules for a profile set (declared junk values normalised as each
    type would normalise them)."""
    junk: set[str] = set()
    if ps.junk_values:
        raw = pa.array(ps.junk_values, pa.string())
        for t in ps.types.values():
            for v in normalise(raw, t).to_pylist():
                if v is not None:
                    junk.add(f"{t.name}{engine.SEP}{v}")
    # Each matcher's pairs are a type of their own, joined in a round after every
    # deterministic one (lower priority: they yield when a limit would break); a pair
    # value is held by its two records only, so no junk threshold applies to it.
    matched = tuple(m.type_name for m in ps.matchers)
    return engine.Rules(
        types=(*ps.types, *matched), rounds=(*ps.rounds, *((t,) for t in matched)),
        limits={t.name: t.limit for t in ps.types.values() if t.limit is not None},
        max_records={**{t.name: t.max_records for t in ps.types.values()},
                     **{t: 0 for t in matched}},
        junk=frozenset(junk))


def fingerprint(rules: engine.Rules) -> str:
    """A digest of everything stitching obeys: a build under other rules must not keep
    the profiles an earlier build made under the old ones."""
    doc = {"types": list(rules.types), "rounds": [list(r) for r in rules.rounds],
           "limits": sorted(rules.limits.items()),
           "max_records": sorted(rules.max_records.items()), "junk": sorted(rules.junk)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def selected(project: Project, name: str | None) -> list[ProfileSet]:
    """The profile set called ``name`` (all of them when None)."""
    sets = profile_sets(project)
    if not sets:
        raise ConfigError("no profile sets: declare one under 'profiles:' "
                          "(see docs/profiles.md)", file=str(project.file), path="profiles")
    if name is None:
        return list(sets.values())
    if name not in sets:
        raise ConfigError(f"unknown profile set {name!r} (declared: {', '.join(sets)})",
                          file=str(project.file), path="profiles")
    return [sets[name]]


def build_set(project: Project, registry: Registry, ps: ProfileSet, *,
              full: bool = False) -> dict[str, Any]:
    """Build one profile set; returns its figures."""
    started = time.monotonic()
    data = read_edges(project, registry, ps)
    read_s = time.monotonic() - started
    t0 = time.monotonic()
    pairs = matching.matched_pairs(registry, ps.matchers, data.rows, str(project.file),
                                   f"profiles.{ps.name}")
    matched = matching.entries_of(pairs)
    match_s = time.monotonic() - t0
    with store.opened(project.state_dir) as st:
        last = st.last_build(ps.name)
        # A matcher may pair old records anew (its model is re-estimated each build), and
        # the stored entries hold no pairs: with matchers now or in the last build, the
        # whole set is re-stitched (ids are still kept by shared records).
        last_stats = (last or {}).get("stats") or {}
        if isinstance(last_stats, str):
            last_stats = json.loads(last_stats)
        had_matchers = "matched_pairs" in last_stats
        rules = rules_of(ps)
        digest = fingerprint(rules)
        if last is not None and not full and last_stats.get("rules") != digest:
            # Profiles the incremental build leaves untouched would keep the old limits.
            log.warning("profiles.%s: the last build ran under other rules (identifiers, "
                        "limits, rounds or junk values): every profile is stitched again",
                        ps.name)
            full = True
        full = full or bool(ps.matchers) or had_matchers
        # A full build stitches every record again and reads no stored entries: left
        # unread, they are not part of its peak memory (a few hundred MB at 10M).
        previous = st.previous(ps.name, entries=not full)
        t0 = time.monotonic()
        entries = pa.concat_tables([data.entries, matched.cast(data.entries.schema)]) \
            if matched.num_rows else data.entries
        out = engine.build(entries, rules, previous, full=full)
        first = not previous.records.num_rows
        # The last build's tables and the edges' rows are not needed past their step:
        # held on, they were a third of a 2M-people build's peak (docs/performance.md).
        del previous, entries
        stitch_s = time.monotonic() - t0
        t0 = time.monotonic()
        # Golden records: only the profiles whose records or rows changed, unless the
        # build is full or what they are computed from besides the rows changed.
        digests = refresh.digests(data.rows, out.records)
        golden_rules = refresh.fingerprint(ps, data.rows)
        before = None if out.delta is None or last_stats.get("golden_rules") != \
            golden_rules else st.digests(ps.name)
        plan = refresh.everything(out, data.rows, data.entries) if before is None else \
            refresh.changed(out, data.rows, data.entries, digests, before)
        del before
        gold = golden.golden(ps, plan.rows, plan.records, plan.entries)
        gone, edited = plan.gone, plan.edited
        del plan
        data.rows.clear()
        pa.default_memory_pool().release_unused()
        golden_s = time.monotonic() - t0
        build_id = uuid.uuid4().hex[:12]
        at = datetime.now(UTC)
        kinds = out.changes.column("kind").to_pylist()
        stats = {
            "name": ps.name, "build_id": build_id, "full": full or first,
            "records": out.records.num_rows, "entries": data.entries.num_rows,
            "restitched": out.restitched, "golden_computed": gold.num_rows,
            "merges": kinds.count("merge"), "splits": kinds.count("split"),
            "junk_values": out.junk.num_rows, "rules": digest, "golden_rules": golden_rules,
            "seconds": {"read": round(read_s, 3), "stitch": round(stitch_s, 3),
                        "golden": round(golden_s, 3)},
        }
        if ps.matchers:
            stats["matched_pairs"] = pairs.num_rows  # kept at or above their threshold
            stats["seconds"]["match"] = round(match_s, 3)
        t0 = time.monotonic()
        tables = _stored(out, data.entries, digests, gold, gone, edited)
        tables["matches"] = pairs.cast(matching.KEPT)
        stats["profiles"] = st.save(ps.name, build_id, at, bool(stats["full"]),
                                    tables=tables, changes=out.changes, stats=stats)
    # Saving includes closing the store, where DuckDB writes its checkpoint.
    stats["seconds"]["save"] = round(time.monotonic() - t0, 3)
    stats["seconds"]["total"] = round(time.monotonic() - started, 3)
    return stats


def _stored(out: engine.Outcome, entries: pa.Table, digests: pa.Table, gold: pa.Table,
            gone: pa.Array | None, edited: pa.Table | None
            ) -> dict[str, pa.Table | store.Update]:
    """The set's tables as a build stores them: a full build replaces each whole; an
    incremental one changes the rows of the records it re-stitched, the entries of
    records new and vanished, and the golden records and digests it computed, in place
    (rewriting millions of unchanged rows was most of its save)."""
    tables: dict[str, pa.Table | store.Update] = {"junk": out.junk}
    d = out.delta
    if d is None:
        return {**tables, "records": out.records, "entries": entries, "golden": gold,
                "digests": digests}
    assert len(d.new_entries) == entries.num_rows
    n = out.records.num_rows
    tables["records"] = store.Update("rkey", d.dropped,
                                     out.records.slice(n - out.restitched))
    tables["entries"] = store.Update("rkey", d.vanished, entries.filter(d.new_entries))
    if gone is None or edited is None:  # every golden record computed
        return {**tables, "golden": gold, "digests": digests}
    tables["golden"] = store.Update("profile_id", gone, gold)
    tables["digests"] = store.Update(
        "rkey", pa.concat_arrays([d.vanished, edited.column("rkey").combine_chunks()]),
        edited)
    return tables


def build(project: Project, registry: Registry, name: str | None = None, *,
          full: bool = False) -> list[dict[str, Any]]:
    """Build the named profile set, or all of them."""
    return [build_set(project, registry, ps, full=full) for ps in selected(project, name)]

