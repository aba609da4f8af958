"""``conn explain SUBJECT``: where one person's data goes, and why.

For every sync of the project: is the subject in the synced stream, is each purpose of
the destination allowed (by which consent record, column value or legal basis) or
blocked (and why), which fields the destination would receive after field policies, and
whether the mapper would reject the record. The same gate and mapper as ``conn sync``
decide; nothing is written anywhere. With conn's state, what each destination
acknowledged and since when; :mod:`conn.runtime.access` adds the GDPR Art. 15 report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from conn.consent.gate import ConsentGate
from conn.consent.values import GRANTED, NO_RECORD, REASONS
from conn.errors import ConnError
from conn.experiments.holdout import held_out
from conn.experiments.spec import holdout_of
from conn.pipeline import narrow_gated
from conn.sync_context import SyncContext

if TYPE_CHECKING:
    from conn.config.model import Project, SyncConfig
    from conn.plugins import Registry
    from conn.state import StateStore

class OpenedSync(NamedTuple):
    """A sync opened for explanation: its gate context, its source batches, and the
    recipient (destination, plugin type, object and ``identity``: the destination's
    :meth:`~conn.destination.Destination.target_identity`, where it writes, no secrets)."""

    ctx: SyncContext
    batches: Iterator[pa.RecordBatch]
    recipient: dict[str, Any]


#: Opens a sync for explanation (``now``: the instant consent expiry is judged at).
Opener = Callable[["SyncConfig", ExitStack, "datetime | None"], OpenedSync]


def plugin_opener(project: Project, registry: Registry) -> Opener:
    """Open syncs through their source and destination plugins (what ``conn`` does)."""
    from conn.source import SourceState

    cache: dict[str, pa.Table] = {}

    def connector(kind: str, name: str, stack: ExitStack) -> Any:
        table = project.sources if kind == "source" else project.destinations
        cfg = table[name]
        cls = (registry.source_class if kind == "source" else registry.destination_class)(
            cfg.type)
        return stack.enter_context(cls.create(cfg.config, instance=name,
                                              project_dir=project.dir))

    def open_sync(sync: SyncConfig, stack: ExitStack, now: datetime | None = None
                  ) -> OpenedSync:
        src = connector("source", sync.source, stack)
        dest = connector("destination", sync.destination, stack)
        stream = src.stream(sync.stream, query=sync.query, primary_key=sync.primary_key)
        obj = dest.object(sync.object)

        def consent_events(name: str) -> pa.Table:
            if name not in cache:
                spec = project.consent_sources[name]
                with ExitStack() as inner:
                    csrc = connector("source", spec["source"], inner)
                    cstream = csrc.stream(spec["stream"])
                    parts = [b for b in csrc.read(cstream) if not isinstance(b, SourceState)]
                    cache[name] = (pa.Table.from_batches(parts, cstream.schema) if parts
                                   else cstream.schema.empty_table())
            return cache[name]

        match_key = sync.match_key or (obj.identifiers[0] if obj.identifiers else "")
        ctx = SyncContext(project, sync, project.destinations[sync.destination], obj, stream,
                          registry, consent_events, match_key, now=now)
        batches = (b for b in src.read(stream) if not isinstance(b, SourceState))
        recipient = {"destination": sync.destination, "type": dest.name,
                     "object": obj.name, "identity": dest.target_identity()}
        return OpenedSync(ctx, batches, recipient)

    return open_sync


def _subject_rows(gate: ConsentGate, batches: Iterator[pa.RecordBatch], subject: str
                  ) -> tuple[pa.RecordBatch | None, pa.Array | None]:
    """The subject's rows (by the consent subject column, else the primary key)."""
    from conn.keys import key_array

    found, found_keys = [], []
    for batch in batches:
        keys = key_array(batch, gate.ctx.stream.primary_key or gate.ctx.sync.primary_key)
        who = gate._subjects(batch, keys)
        hit = pc.fill_null(pc.equal(who, subject), False)
        if pc.any(hit).as_py():
            found.append(batch.filter(hit))
            found_keys.append(keys.filter(hit))
    if not found:
        return None, None
    table = pa.Table.from_batches(found).combine_chunks()
    return table.to_batches()[0], pa.concat_arrays(found_keys)


def _purposes(gate: ConsentGate, rows: pa.RecordBatch, keys: pa.Array, subject: str
              ) -> dict[str, Any]:
    from conn.runtime.access import annotate_consent

    d = gate.decide(rows, keys)
    records = gate.index.records(subject) if gate.index is not None else []
    per_identity = gate.index.identity_records(subject) if gate.index is not None else []
    out: dict[str, Any] = {}
    for p in gate.purposes:
        code = int(d.codes[p].max()) if len(d.codes[p]) else NO_RECORD
        allowed = bool(d.ok[p].all())
        entry: dict[str, Any] = {"allowed": allowed, "decision": REASONS[code]}
        if allowed and code == NO_RECORD:
            entry["legal_basis"] = gate.legal_basis[p]
        elif allowed and code == GRANTED:
            entry["legal_basis"] = "consent"
        evidence = []
        col = gate.columns.get(p)
        if col is not None:
            evidence.append({"column": col, "value": rows.column(col).to_pylist()[0]})
        for r in records:
            if r.get("purpose") == p:
                evidence.append({"consent_source": gate.source_name, **r})
                if allowed and code == GRANTED and r.get("legal_basis"):
                    entry["legal_basis"] = r["legal_basis"]
        # A profile's consent: each identity's latest event, and which one decided.
        identities = [{"consent_source": gate.source_name, **r} for r in per_identity
                      if r.get("purpose") == p]
        if identities:
            entry["identities"] = identities
        if not evidence and code == NO_RECORD:
            evidence.append({"none": "no consent column value and no consent event"})
        entry["evidence"] = evidence
        annotate_consent(gate, rows, p, entry, d.expired[p])
        out[p] = entry
    return out


def explain_sync(ctx: SyncContext, batches: Iterator[pa.RecordBatch], subject: str
                 ) -> dict[str, Any]:
    """What happens to ``subject`` in one sync."""
    from conn.consent.gate import build_gate
    from conn.mapping import build_mapper
    from conn.profiles.consent import gate_index

    sync = ctx.sync
    gate = build_gate(ctx, gate_index(ctx))
    mapper = build_mapper(ctx)
    out: dict[str, Any] = {
        "sync": sync.name, "destination": sync.destination, "object": sync.object,
        "purposes": list(gate.purposes), "found": False, "would_send": False,
        "fields": {s.field: {"from": s.columns,
                             "policy": (gate.policies[s.columns[0]].as_dict()
                                        if s.is_direct and s.columns[0] in gate.policies
                                        else None)}
                   for s in mapper.specs},
    }
    problems = gate.issues() + mapper.issues()
    if problems:
        out["config_errors"] = [str(e) for e in problems]
        return out
    rows, keys = _subject_rows(gate, batches, subject)
    if rows is None or keys is None:
        return out
    out["found"] = True
    out["rows"] = rows.num_rows
    out["keys"] = keys.to_pylist()
    out["consent"] = _purposes(gate, rows, keys, subject)
    gated = gate.apply(rows, keys)
    spec = holdout_of(sync, str(ctx.project.file), ctx.project)
    if spec is not None:
        # The same split as conn sync, after the gate: a held-out person is not sent.
        held = held_out(keys, spec.percent, spec.salt)
        out["experiment"] = {"name": spec.name, "percent": float(spec.percent),
                             "arm": "holdout" if pc.any(held).as_py() else "treatment",
                             "eligible": gated.batch.num_rows > 0}
        gated = narrow_gated(gated, pc.is_in(gated.keys, value_set=keys.filter(
            pc.invert(held))))
    mapped = mapper.apply(gated)
    out["would_send"] = mapped.batch.num_rows > 0
    out["records"] = mapped.batch.to_pylist()
    if mapped.rejected:
        out["rejected"] = [reason for _, reason in mapped.rejected]
    return out


def delivered(store: StateStore, sync: str, keys: list[str],
              key_types: pa.Schema | None) -> list[dict[str, Any]]:
    """What the sync's destination acknowledged for these keys, values with their type:
    key, match value, since when and by which run."""
    from conn.keys import typed_keys
    from conn.state.typed_text import value_of

    rows = store.delivered(sync, keys)
    typed = typed_keys([r["key"] for r in rows], key_types)
    return [{"key": k, "match_value": value_of(r["match_value"], r["match_type"]),
             "first_acknowledged_at": r.get("first_acked_at"),
             "acknowledged_at": r["acked_at"], "run_id": r["run_id"]}
            for k, r in zip(typed, rows, strict=True)]


def _recorded_arm(store: StateStore, result: dict[str, Any], keys: list[str]) -> None:
    """Add to the result's ``experiment`` the arm the state recorded for the subject and
    when (absent: the subject was never eligible while the experiment ran)."""
    exp, experiments = result.get("experiment"), store.experiment_store()
    if exp is None or experiments is None:
        return
    found = experiments.arms(exp["name"], keys)
    if found:
        first = min(found.values(), key=lambda m: m["assigned_at"])
        exp["recorded"] = {"arm": first["arm"], "run_id": first["run_id"],
                           "assigned_at": datetime.fromtimestamp(
                               first["assigned_at"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def explain(project: Project, subject_key: str, registry: Registry, *,
            opener: Opener | None = None, store: StateStore | None = None
            ) -> dict[str, Any]:
    """Which syncs would send ``subject_key``'s data, to which destinations, which fields
    after policies, and which consent record or legal basis allows or blocks each; with
    ``store``, also what each destination acknowledged for the subject and when. The
    result's ``access_report`` is the GDPR Art. 15 report (:mod:`conn.runtime.access`)."""
    from conn.consent.expiry import run_now
    from conn.runtime.access import access_report

    open_sync = opener or plugin_opener(project, registry)
    now = run_now(datetime.now(UTC))
    from conn.privacy.suppression import Suppression

    # People erased with conn forget are withheld here as by conn sync.
    suppression = Suppression.load(store.privacy()) if store is not None else None
    results = []
    for sync in project.syncs.values():
        with ExitStack() as stack:
            try:
                ctx, batches, recipient = open_sync(sync, stack, now)
                ctx.suppression = suppression
                result = explain_sync(ctx, batches, subject_key)
                result["recipient"] = recipient
                keys = result.pop("keys", None)
                if keys is None and store is not None and not result.get("error"):
                    # Gone from the source, perhaps still held by the destination.
                    found = delivered(store, sync.name, [subject_key], None)
                    if found:
                        result["delivered"] = found
                if keys is not None:
                    schema = ctx.stream.schema
                    key_types = pa.schema([schema.field(c) for c in ctx.stream.primary_key
                                           if c in schema.names])
                    from conn.keys import typed_keys

                    result["keys"] = typed_keys(keys, key_types)
                    if store is not None:
                        result["delivered"] = delivered(store, sync.name, keys, key_types)
                        _recorded_arm(store, result, keys)
                results.append(result)
            except ConnError as exc:
                results.append({"sync": sync.name, "destination": sync.destination,
                                "object": sync.object, "error": str(exc)})
    sends = [r["sync"] for r in results if r.get("would_send")]
    out: dict[str, Any] = {
        "subject": subject_key, "generated_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sent_by": sends,
        "destinations": sorted({r["destination"] for r in results if r.get("would_send")}),
        "syncs": results}
    out["access_report"] = access_report(out, out["generated_at"])
    return out
